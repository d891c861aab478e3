//! A throwaway PostgreSQL server for tests: a real `postgres`, in a temp directory, on a free
//! port of 127.0.0.1. Tests never touch a system database.
//!
//! [`PgServer::start`] finds PostgreSQL's programs (`initdb` on `PATH`, else the newest
//! `/usr/lib/postgresql/*/bin`, where Debian's `postgresql` package puts them), runs `initdb`
//! into a fresh temp directory (superuser `postgres`, `trust` authentication, UTF-8, no
//! locale) and starts the server with `pg_ctl start -w` on a port that was free a moment
//! before (a lost race for it is retried on another port). [`shared`] is one such server per
//! test binary, started on first use; each test takes its own database on it
//! ([`PgServer::unique_database`]). A test that stops, crashes or restarts PostgreSQL starts
//! its own server instead.
//!
//! From a test, [`require`] (shared) or [`require_own`] (a server of its own) return `None`,
//! after a notice, when PostgreSQL is not installed, so a plain `cargo test` on a machine
//! without it still passes; with `CCR_SYSTEM_TESTS=required` (which `cargo xtask test` sets,
//! after installing Debian's `postgresql`) they panic instead. Any other failure to start
//! panics: an installed PostgreSQL that cannot start is a failure, not a skip.
//!
//! ```no_run
//! # async fn ledger(_url: &str) {}
//! #[tokio::test]
//! async fn ledger_on_postgres() {
//!     let Some(pg) = ccr_pgtest::require() else { return };
//!     let url = pg.unique_database("ledger").unwrap();
//!     ledger(&url).await;
//! }
//! ```
//!
//! **As root** (CI runs the suite as root, and `initdb` refuses root), `initdb`, `pg_ctl` and so
//! the server run as `nobody` (its uid and primary group, supplementary groups cleared: the
//! same drop as `setpriv --reuid=nobody --regid=... --clear-groups`, done by
//! `std::process::Command::uid`/`gid`), and the temp directory is handed to `nobody`; it must
//! be reachable by `nobody`, so `TMPDIR`, if set, must be world-traversable. Otherwise they run
//! as the current user.
//!
//! **Settings** (see `CONF`): `fsync = off` and `full_page_writes = off` make the tests fast
//! and are for tests only: they give up durability across an OS crash or power loss, which a
//! throwaway server never sees. A crash of PostgreSQL itself ([`PgServer::crash`], `kill -9`)
//! still loses nothing committed: `synchronous_commit` stays on, so a commit returns only
//! after its WAL was written to the kernel, and the next start replays it. Unix sockets are
//! off: clients connect over TCP to 127.0.0.1 only, as the superuser `postgres`, without a
//! password (`trust`). Anyone on the machine could, too: it is a test server, holding test
//! data, for as long as the test runs.
//!
//! **TLS.** [`PgServer::start_with_tls`] (or [`require_own_with_tls`]) starts a server with
//! `ssl = on` and the certificate and key the test gives ([`ServerTls`], PEM: a test makes
//! them, signed by a CA of its own), written as `data/server.crt` and `data/server.key`
//! (mode 0600, the server's user's). Plain connections are still accepted (`sslmode=disable`
//! works), and TLS stays on across restarts. [`PgServer::set_tls`] changes the certificate
//! of a running server.
//!
//! **Cleanup.** Dropping a [`PgServer`] stops it (`pg_ctl stop -m immediate`) and removes its
//! directory. The shared server is a static, never dropped, and a test binary may be killed;
//! so every server has a watchdog, a small `sh` (in its own process group, so a Ctrl-C at
//! the terminal does not reach it) that waits for end-of-file on a pipe whose write end only
//! this process holds. The pipe closes when the [`PgServer`] is dropped or the process ends,
//! however it ends (`exit`, a panic, `SIGKILL`); the watchdog then stops the server and
//! removes the directory. Drop itself is that path: it closes the pipe and waits for the
//! watchdog. PostgreSQL on its own would outlive the test binary (`pg_ctl` detaches it).

#![warn(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Where Debian's packages put each PostgreSQL version: `/usr/lib/postgresql/<version>/bin`.
const DEBIAN_LIB: &str = "/usr/lib/postgresql";

/// Starts tried, each on a new free port, when the port was taken before the server bound it.
const PORT_ATTEMPTS: usize = 5;

/// How long `pg_ctl` may wait for a start or a stop (seconds).
const PG_CTL_TIMEOUT: &str = "60";

/// The superuser `initdb` creates, and the user of every URL.
pub const SUPERUSER: &str = "postgres";

/// The server's settings, written to `data/ccr-pgtest.conf` (included from `postgresql.conf`,
/// so a restart keeps them). `{port}` is filled in per start.
const CONF: &str = "\
# Written by ccr-pgtest: a throwaway server for tests. Never use these settings elsewhere.
listen_addresses = '127.0.0.1'
port = {port}
# TCP only: no Unix socket (clients use 127.0.0.1; no path-length limit on the temp dir).
unix_socket_directories = ''
# Enough for a connection pool per test, many tests at once.
max_connections = 200
shared_buffers = 32MB
# Tests only: no durability across an OS crash (never happens to a throwaway server).
# synchronous_commit stays on: a committed transaction survives a crash of PostgreSQL.
fsync = off
full_page_writes = off
# Dynamic shared memory in the data directory, not /dev/shm (64 MB in a default container),
# and removed with it.
dynamic_shared_memory_type = mmap
";

/// The settings added to [`CONF`] for a server with TLS ([`PgServer::start_with_tls`]).
const TLS_CONF: &str = "\
# TLS with the test's certificate (plain connections are accepted too).
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
";

/// The certificate a test server serves TLS with: PEM, as a test makes them.
#[derive(Clone)]
pub struct ServerTls {
    /// The server's certificate, then any intermediates (`data/server.crt`).
    pub cert_pem: String,
    /// Its private key (`data/server.key`).
    pub key_pem: String,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls(<certificate and key>)")
    }
}

/// Why a test server could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgTestError {
    /// PostgreSQL's programs were not found: the tests that need it are skipped (see [`require`]).
    #[error(
        "PostgreSQL is not installed: {0} (Debian package `postgresql`; `cargo xtask test` \
         installs it)"
    )]
    NotInstalled(String),
    /// A step failed: what was being done, and the program's output or the server's log.
    #[error("{what}: {detail}")]
    Failed {
        /// The step, e.g. `initdb`.
        what: String,
        /// Its error: exit status and output, or the tail of the server's log.
        detail: String,
    },
    /// A database name outside `[a-z_][a-z0-9_]*` (at most 63 bytes).
    #[error(
        "invalid database name {0:?}: use lowercase letters, digits and `_`, starting with a \
         letter or `_`, at most 63 bytes"
    )]
    InvalidName(String),
}

type Result<T> = std::result::Result<T, PgTestError>;

fn failed(what: impl Into<String>, detail: impl fmt::Display) -> PgTestError {
    PgTestError::Failed {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// The shared server of this test binary, started on first use; `None`, after a notice on
/// stderr, when PostgreSQL is not installed.
///
/// # Panics
///
/// When PostgreSQL is not installed and `CCR_SYSTEM_TESTS=required`, or when it is installed
/// but the server does not start.
pub fn require() -> Option<&'static PgServer> {
    shared().map_or_else(skip_or_panic, Some)
}

/// A server of the test's own (to stop, crash or restart); `None`, after a notice, when
/// PostgreSQL is not installed. Panics as [`require`] does.
pub fn require_own() -> Option<PgServer> {
    PgServer::start().map_or_else(skip_or_panic, Some)
}

/// [`require_own`], the server serving TLS with `tls` ([`PgServer::start_with_tls`]).
pub fn require_own_with_tls(tls: &ServerTls) -> Option<PgServer> {
    PgServer::start_with_tls(tls).map_or_else(skip_or_panic, Some)
}

/// The server every test of this binary shares, started on first use (a failure to start is
/// kept and returned to every caller). Never stopped by a test: it stops when the process
/// ends (see the crate doc).
pub fn shared() -> Result<&'static PgServer> {
    static SHARED: OnceLock<Result<PgServer>> = OnceLock::new();
    SHARED
        .get_or_init(PgServer::start)
        .as_ref()
        .map_err(Clone::clone)
}

/// True when the system tests must run (`CCR_SYSTEM_TESTS=required`, set by `cargo xtask test`).
fn required() -> bool {
    std::env::var("CCR_SYSTEM_TESTS").is_ok_and(|v| v == "required")
}

/// `None` after a notice when PostgreSQL is missing and not required; a panic otherwise.
fn skip_or_panic<T>(e: PgTestError) -> Option<T> {
    match e {
        PgTestError::NotInstalled(_) if !required() => {
            eprintln!("NOTICE: skipped: no PostgreSQL. {e}");
            None
        }
        PgTestError::NotInstalled(_) => {
            panic!("CCR_SYSTEM_TESTS=required but {e}")
        }
        e => panic!("the test PostgreSQL server did not start: {e}"),
    }
}

/// The PostgreSQL programs a server needs, from one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Programs {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    /// From the same directory when it has one, else from `PATH` (Debian's wrapper).
    psql: PathBuf,
}

/// Find `initdb` and `pg_ctl`: on `PATH` (its directory after resolving symlinks, which must
/// have `pg_ctl` too), else in the newest `/usr/lib/postgresql/<version>/bin`.
fn find_programs() -> Result<Programs> {
    find_programs_in(std::env::var_os("PATH").as_deref(), Path::new(DEBIAN_LIB))
}

fn find_programs_in(path: Option<&OsStr>, lib: &Path) -> Result<Programs> {
    let path_dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_path = path_dirs.iter().find_map(|d| {
        let initdb = fs::canonicalize(d.join("initdb")).ok()?;
        let dir = initdb.parent()?.to_owned();
        complete(&dir).then_some(dir)
    });
    let bin = from_path
        .or_else(|| newest_version_bin(lib, complete))
        .ok_or_else(|| {
            PgTestError::NotInstalled(format!(
                "no initdb and pg_ctl on PATH or in {}/<version>/bin",
                lib.display()
            ))
        })?;
    let psql = Some(bin.join("psql"))
        .filter(|p| p.is_file())
        .or_else(|| {
            path_dirs
                .iter()
                .map(|d| d.join("psql"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            PgTestError::NotInstalled(format!("no psql in {} or on PATH", bin.display()))
        })?;
    Ok(Programs {
        initdb: bin.join("initdb"),
        pg_ctl: bin.join("pg_ctl"),
        psql,
    })
}

/// `lib/<version>/bin` of the highest version (`9.6` < `15` < `16`) that passes `complete`.
fn newest_version_bin(lib: &Path, complete: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    fs::read_dir(lib)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// The uid and gid the server runs as: `nobody`'s when this process is root, else none (the
/// current user).
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    static NOBODY: OnceLock<std::result::Result<(u32, u32), String>> = OnceLock::new();
    NOBODY
        .get_or_init(|| {
            let id = |flag: &str| -> std::result::Result<u32, String> {
                let out = Command::new("id")
                    .args([flag, "nobody"])
                    .output()
                    .map_err(|e| format!("could not run `id {flag} nobody`: {e}"))?;
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .map_err(|_| format!("`id {flag} nobody` failed: {}", output_text(&out)))
            };
            Ok((id("-u")?, id("-g")?))
        })
        .clone()
        .map(Some)
        .map_err(|e| {
            failed(
                "running as root, initdb needs an unprivileged user (`nobody`)",
                e,
            )
        })
}

/// A port of 127.0.0.1 that was free when asked (the OS's choice; it may be taken again
/// before the server binds it, which [`PgServer::start`] retries).
fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed("finding a free port on 127.0.0.1", e))
}

/// A program's status, stderr and stdout, for an error message.
fn output_text(out: &Output) -> String {
    format!(
        "{}; {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

/// A running (or stopped) throwaway PostgreSQL server; see the crate doc.
pub struct PgServer {
    programs: Programs,
    /// The temp directory: `data/` (the cluster) and `log` (the server's log).
    dir: PathBuf,
    port: u16,
    /// The uid and gid `initdb`, `pg_ctl` and the server run as (root only).
    user: Option<(u32, u32)>,
    /// `ssl = on` with the certificate in the data directory.
    tls: bool,
    running: bool,
    watchdog: Watchdog,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("url", &self.url())
            .field("dir", &self.dir)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// `initdb` a new cluster in a new temp directory and start it on a free port of
    /// 127.0.0.1 (a second or two, most of it initdb). The server is this value's: dropping
    /// it stops the server and removes the directory.
    pub fn start() -> Result<PgServer> {
        Self::start_on(free_port, None)
    }

    /// [`PgServer::start`], serving TLS with `tls` as well as plain connections (see the
    /// crate doc).
    pub fn start_with_tls(tls: &ServerTls) -> Result<PgServer> {
        Self::start_on(free_port, Some(tls))
    }

    /// [`PgServer::start`] on the ports `next_port` gives, one per attempt, with TLS if given.
    fn start_on(
        mut next_port: impl FnMut() -> Result<u16>,
        tls: Option<&ServerTls>,
    ) -> Result<PgServer> {
        let programs = find_programs()?;
        let user = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("ccr-pgtest-")
            .tempdir()
            .map_err(|e| failed("creating the temp directory", e))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| failed(format!("handing {} to nobody", dir.path().display()), e))?;
        }
        // From here on the watchdog removes the directory (also when this function fails).
        let watchdog = Watchdog::spawn(&programs.pg_ctl, dir.path(), user)?;
        let mut server = PgServer {
            programs,
            dir: dir.keep(),
            port: 0,
            user,
            tls: tls.is_some(),
            running: false,
            watchdog,
        };
        server.initdb()?;
        if let Some(tls) = tls {
            server.write_tls(tls)?;
        }
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = next_port()?;
            match server.boot() {
                Ok(()) => return Ok(server),
                Err(Boot::PortTaken(e)) => last = Some(e),
                Err(Boot::Failed(e)) => return Err(e),
            }
        }
        Err(last.expect("PORT_ATTEMPTS > 0"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the server's default database (shared by
    /// every user of the server: a test wants [`PgServer::unique_database`]).
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server (whether it exists or not).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's port on 127.0.0.1 (the same across [`PgServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp directory (`data/`, the cluster; `log`, the server's log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log so far (to print when a test fails).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// True between a start and a stop or crash.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The postmaster's pid, from `data/postmaster.pid` (`None` when there is none).
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Create database `name` (see [`PgTestError::InvalidName`]); its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        check_name(name)?;
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.database_url(name))
    }

    /// Create a new database named `prefix` and a number no other call of this process used;
    /// its URL. The way for a test on the [`shared`] server to have a database of its own.
    pub fn unique_database(&self, prefix: &str) -> Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name)
    }

    /// Run `sql` with `psql` in database `database` (stopping at the first error); its
    /// output, unaligned and without headers (`psql -tA`): one line per row, `|` between columns.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        check_name(database)?;
        let mut cmd = Command::new(&self.programs.psql);
        cmd.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.database_url(database))
            .arg("-c")
            .arg(sql);
        let out = self.run(cmd, false, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stop the server cleanly (`pg_ctl stop -m fast`: clients are disconnected, a checkpoint
    /// is written). Nothing to do when it is not running.
    pub fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Crash the server (`pg_ctl stop -m immediate`: every process quits at once, no
    /// checkpoint); the next start replays the WAL, as after a crash. Nothing to do when it
    /// is not running.
    pub fn crash(&mut self) -> Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// Start the stopped (or crashed) server again: same data, same port, same URLs. The port
    /// may be taken meanwhile: that is retried for a few seconds, then an error. Nothing to do
    /// when it is running.
    pub fn resume(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.boot() {
                Ok(()) => return Ok(()),
                Err(Boot::PortTaken(e)) if attempt >= 20 => return Err(e),
                Err(Boot::PortTaken(_)) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(Boot::Failed(e)) => return Err(e),
            }
        }
    }

    /// [`PgServer::stop`], then [`PgServer::resume`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.resume()
    }

    /// `initdb` the cluster into `data/`.
    fn initdb(&self) -> Result<()> {
        let mut cmd = Command::new(&self.programs.initdb);
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        self.run(cmd, true, "initdb")?;
        let conf = self.data_dir().join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(b"\ninclude = 'ccr-pgtest.conf'\n"))
            .map_err(|e| failed(format!("writing {}", conf.display()), e))
    }

    /// `server.crt` and `server.key` in the data directory, the server's user's, 0600 (the
    /// server refuses a key others can read).
    fn write_tls(&self, tls: &ServerTls) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for (name, pem) in [("server.crt", &tls.cert_pem), ("server.key", &tls.key_pem)] {
            let path = self.data_dir().join(name);
            let write = || -> std::io::Result<()> {
                fs::write(&path, pem)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
                if let Some((uid, gid)) = self.user {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                }
                Ok(())
            };
            write().map_err(|e| failed(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Serve TLS with `tls` from now on (a new certificate, or TLS on a server that had
    /// none): the files are written and, when the server runs, its configuration reloaded.
    /// The reload is asynchronous: connections made a moment later may still get the old
    /// certificate.
    pub fn set_tls(&mut self, tls: &ServerTls) -> Result<()> {
        self.write_tls(tls)?;
        self.tls = true;
        self.write_conf()?;
        if self.running {
            self.psql("postgres", "SELECT pg_reload_conf()")?;
        }
        Ok(())
    }

    /// `data/ccr-pgtest.conf`: [`CONF`] for the current port, and [`TLS_CONF`] with TLS.
    fn write_conf(&self) -> Result<()> {
        let conf = self.data_dir().join("ccr-pgtest.conf");
        let mut settings = CONF.replace("{port}", &self.port.to_string());
        if self.tls {
            settings.push_str(TLS_CONF);
        }
        fs::write(&conf, settings).map_err(|e| failed(format!("writing {}", conf.display()), e))
    }

    /// Write the settings for the current port and `pg_ctl start -w`.
    fn boot(&mut self) -> std::result::Result<(), Boot> {
        self.write_conf().map_err(Boot::Failed)?;
        let log = self.dir.join("log");
        let log_before = fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut cmd = Command::new(&self.programs.pg_ctl);
        cmd.args(["start", "-w", "-s", "-t", PG_CTL_TIMEOUT, "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log);
        match self.run(cmd, true, "pg_ctl start") {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(e) => {
                let log = self.log();
                let new = log.get(log_before..).unwrap_or(&log);
                let e = failed(
                    format!("starting PostgreSQL on 127.0.0.1:{}", self.port),
                    format!("{e}\nserver log:\n{}", new.trim()),
                );
                if new.contains("Address already in use") || new.contains("could not bind") {
                    Err(Boot::PortTaken(e))
                } else {
                    Err(Boot::Failed(e))
                }
            }
        }
    }

    /// `pg_ctl stop -m mode -w` when running.
    fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = Command::new(&self.programs.pg_ctl);
        cmd.args(["stop", "-w", "-s", "-t", PG_CTL_TIMEOUT, "-m", mode, "-D"])
            .arg(self.data_dir());
        self.run(cmd, true, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// Run a PostgreSQL program (as the server's user when `as_server`) in a clean
    /// environment; its output when it succeeded.
    fn run(&self, mut cmd: Command, as_server: bool, what: &str) -> Result<Output> {
        pg_env(&mut cmd, &self.dir);
        if as_server {
            as_user(&mut cmd, self.user);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("running {what}"), e))?;
        if out.status.success() {
            Ok(out)
        } else {
            let mut detail = output_text(&out);
            if self.user.is_some() && what == "initdb" {
                detail.push_str(
                    " (as root, initdb runs as `nobody`, which must reach the temp directory: \
                     is TMPDIR world-traversable?)",
                );
            }
            Err(failed(what, detail))
        }
    }
}

impl Drop for PgServer {
    /// Stop the server (immediately) and remove its directory: the watchdog's work, which
    /// this waits for.
    fn drop(&mut self) {
        self.watchdog.finish();
    }
}

/// Why a start failed: the port was taken (try another), or anything else.
enum Boot {
    PortTaken(PgTestError),
    Failed(PgTestError),
}

/// PostgreSQL's programs read `PG*` variables (`PGDATA`, `PGPORT`, `PGOPTIONS`, ...) and
/// messages follow the locale: neither may come from the caller's environment.
fn pg_env(cmd: &mut Command, dir: &Path) {
    let pg_vars: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_str().is_some_and(|k| k.starts_with("PG")))
        .collect();
    for k in pg_vars {
        cmd.env_remove(k);
    }
    cmd.env("LC_ALL", "C").env("HOME", dir).current_dir(dir);
}

/// Run `cmd` as `user` (uid, gid; supplementary groups cleared by std), if any.
fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

/// Name rules of [`PgTestError::InvalidName`]: safe unquoted in a URL and quoted in SQL.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(PgTestError::InvalidName(name.to_owned()))
    }
}

/// Stops the server and removes its directory when the write end of its stdin closes: when
/// the [`PgServer`] is dropped, or this process ends (see the crate doc).
struct Watchdog {
    child: Child,
}

/// The watchdog's script: `$1` the directory, `$2` pg_ctl, `$3` the data directory. `read`
/// returns at end-of-file (nothing is ever written); `pg_ctl stop` fails harmlessly when the
/// server is not running (stopped, or never started).
const WATCHDOG: &str = "\
trap '' INT HUP
read -r _
\"$2\" stop -w -s -t 60 -m immediate -D \"$3\" >/dev/null 2>&1
rm -rf -- \"$1\"
";

impl Watchdog {
    fn spawn(pg_ctl: &Path, dir: &Path, user: Option<(u32, u32)>) -> Result<Watchdog> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("ccr-pgtest-watchdog")
            .arg(dir)
            .arg(pg_ctl)
            .arg(dir.join("data"));
        pg_env(&mut cmd, dir);
        // Its own process group: a Ctrl-C at the terminal must not kill it before its work.
        cmd.current_dir("/")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The server's user: pg_ctl refuses root, and that user owns everything to remove.
        as_user(&mut cmd, user);
        let child = cmd
            .spawn()
            .map_err(|e| failed("starting the watchdog (sh)", e))?;
        Ok(Watchdog { child })
    }

    /// Close the pipe and wait until the watchdog has stopped the server and removed the directory.
    fn finish(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests;
