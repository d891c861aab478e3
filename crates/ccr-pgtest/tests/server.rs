//! The test server itself, as a test of the service uses it: databases, tokio-postgres,
//! restarts and crashes, and that nothing is left behind, even by a killed test process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Guard on every wait: a test fails instead of hanging.
const T: Duration = Duration::from_secs(30);

/// `SELECT current_database()` and `1 + 1` through tokio-postgres, as the service connects.
async fn query_over_tokio_postgres(url: &str) -> String {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let conn = tokio::spawn(conn);
    let row = client
        .query_one("SELECT current_database(), 1 + 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(1), 2);
    let db: String = row.get(0);
    drop(client);
    conn.await.unwrap().unwrap();
    db
}

#[tokio::test]
async fn the_shared_server_gives_each_test_a_database_of_its_own() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    assert!(
        pg.url().starts_with("postgres://postgres@127.0.0.1:"),
        "{}",
        pg.url()
    );
    let a = pg.unique_database("pgtest").unwrap();
    let b = pg.unique_database("pgtest").unwrap();
    assert_ne!(a, b);
    let name = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(query_over_tokio_postgres(&a).await, name(&a));
    assert_eq!(query_over_tokio_postgres(&b).await, name(&b));
    // A table made in one is not in the other.
    pg.psql(
        &name(&a),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (7)",
    )
    .unwrap();
    assert_eq!(pg.psql(&name(&a), "SELECT x FROM t").unwrap().trim(), "7");
    let missing = pg
        .psql(&name(&b), "SELECT x FROM t")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("does not exist"), "{missing}");
    // A name taken is an error, not a second database by the same name.
    let again = pg.create_database(&name(&a)).unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    // The settings of the crate doc are in force.
    let settings = pg
        .psql(
            "postgres",
            "SELECT current_setting('max_connections'), current_setting('fsync'), \
             current_setting('synchronous_commit'), current_setting('server_encoding')",
        )
        .unwrap();
    assert_eq!(settings.trim(), "200|off|on|UTF8");
}

#[tokio::test]
async fn restart_and_crash_keep_committed_data_on_the_same_port() {
    let Some(mut pg) = ccr_pgtest::require_own() else {
        return;
    };
    let url = pg.create_database("kept").unwrap();
    pg.psql("kept", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    let (port, pid) = (pg.port(), pg.pid().unwrap());

    pg.restart().unwrap();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_ne!(pg.pid().unwrap(), pid, "a new postmaster");
    pg.psql("kept", "INSERT INTO t VALUES (2)").unwrap();

    // A crash: no checkpoint; the committed insert comes back from the WAL.
    pg.crash().unwrap();
    assert!(!pg.is_running());
    assert!(pg.psql("kept", "SELECT 1").is_err(), "the server is down");
    pg.resume().unwrap();
    assert_eq!(
        pg.psql("kept", "SELECT x FROM t ORDER BY x").unwrap(),
        "1\n2\n"
    );
    assert_eq!(query_over_tokio_postgres(&url).await, "kept");
    assert!(
        pg.log().contains("database system was interrupted"),
        "{}",
        pg.log()
    );
}

/// A server started with a certificate serves TLS (psql's `sslmode=prefer` takes it) and
/// plain connections (tokio-postgres without TLS), and still does after a restart.
#[tokio::test]
async fn a_tls_server_serves_tls_and_plain_connections_across_a_restart() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let tls = ccr_pgtest::ServerTls {
        cert_pem: cert.cert.pem(),
        key_pem: cert.key_pair.serialize_pem(),
    };
    assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    let Some(mut pg) = ccr_pgtest::require_own_with_tls(&tls) else {
        return;
    };
    let url = pg.create_database("tls").unwrap();
    let over_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for _ in 0..2 {
        assert_eq!(pg.psql("tls", "SHOW ssl").unwrap().trim(), "on");
        assert_eq!(pg.psql("tls", over_tls).unwrap().trim(), "t");
        assert_eq!(query_over_tokio_postgres(&url).await, "tls");
        pg.restart().unwrap();
    }
    let key = pg.data_dir().join("server.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// True when process `pid` is gone (or a zombie, which nobody here may reap).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
    }
}

/// Wait (at most [`T`]) until `dir` and process `pid` are gone.
fn wait_gone(dir: &Path, pid: u32) {
    let deadline = Instant::now() + T;
    while dir.exists() || !gone(pid) {
        assert!(
            Instant::now() < deadline,
            "left behind: dir exists {}, postmaster {pid} gone {}",
            dir.exists(),
            gone(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn drop_stops_the_server_and_removes_its_directory() {
    let Some(pg) = ccr_pgtest::require_own() else {
        return;
    };
    let (dir, pid) = (pg.dir().to_owned(), pg.pid().unwrap());
    assert!(!gone(pid));
    // As root, the server runs as nobody (initdb refuses root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(!uid.split_whitespace().skip(1).any(|u| u == "0"), "{uid}");
    }
    drop(pg);
    // Drop waits for the watchdog: the directory is gone already. The postmaster removes its
    // pid file, which `pg_ctl stop -w` waits for, just before it exits: allow it a moment.
    assert!(!dir.exists(), "{} left behind", dir.display());
    wait_gone(&dir, pid);
}

/// With `CCR_PGTEST_LEAK_REPORT` set (by the test below, which runs this binary again), start
/// the shared server, write its directory and pid to that file and wait to be killed.
#[test]
fn leak_child() {
    let Some(report) = std::env::var_os("CCR_PGTEST_LEAK_REPORT") else {
        return;
    };
    let pg = ccr_pgtest::shared().unwrap();
    let tmp = PathBuf::from(&report).with_extension("tmp");
    std::fs::write(
        &tmp,
        format!("{}\n{}\n", pg.dir().display(), pg.pid().unwrap()),
    )
    .unwrap();
    std::fs::rename(&tmp, &report).unwrap();
    std::thread::sleep(T * 10);
}

/// The shared server is a static, never dropped: when its test process is killed, the
/// watchdog stops the server and removes its directory all the same.
#[test]
fn a_killed_test_process_leaves_no_server_behind() {
    // Only to know whether PostgreSQL is here at all: the child starts its own shared server.
    let Some(_) = ccr_pgtest::require() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let report = scratch.path().join("report");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "leak_child", "--test-threads=1"])
        .env("CCR_PGTEST_LEAK_REPORT", &report)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&report) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the child did not start its server"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut lines = text.lines();
    let dir = PathBuf::from(lines.next().unwrap());
    let pid: u32 = lines.next().unwrap().parse().unwrap();
    assert!(dir.exists() && !gone(pid));
    child.kill().unwrap(); // SIGKILL: no destructor, no atexit.
    child.wait().unwrap();
    wait_gone(&dir, pid);
}
