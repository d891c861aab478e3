//! Finding the programs (in fake install trees), names, and the retry of a taken port.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use super::*;

/// An executable file at `path` (and its parents).
fn program(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `lib/<version>/bin` with initdb, pg_ctl and psql.
fn install(lib: &Path, version: &str) -> PathBuf {
    let bin = lib.join(version).join("bin");
    for p in ["initdb", "pg_ctl", "psql"] {
        program(&bin.join(p));
    }
    bin
}

#[test]
fn the_newest_debian_version_is_found_when_path_has_none() {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("lib");
    install(&lib, "9.6");
    let v16 = install(&lib, "16");
    install(&lib, "15");
    // A newer version without pg_ctl, and a directory that is no version, do not count.
    program(&lib.join("17/bin/initdb"));
    program(&lib.join("latest/bin/initdb"));
    program(&lib.join("latest/bin/pg_ctl"));
    let empty = root.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let found = find_programs_in(Some(empty.as_os_str()), &lib).unwrap();
    assert_eq!(found.initdb, v16.join("initdb"));
    assert_eq!(found.pg_ctl, v16.join("pg_ctl"));
    assert_eq!(found.psql, v16.join("psql"));
}

#[test]
fn initdb_on_path_wins_and_its_symlink_leads_to_the_installation() {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("lib");
    install(&lib, "16");
    let v14 = install(&lib, "14");
    // As on this kind of machine: /usr/local/bin/initdb -> /usr/lib/postgresql/14/bin/initdb,
    // pg_ctl likewise, but no psql beside them.
    let local = root.path().join("local-bin");
    fs::create_dir(&local).unwrap();
    for p in ["initdb", "pg_ctl"] {
        std::os::unix::fs::symlink(v14.join(p), local.join(p)).unwrap();
    }
    let found = find_programs_in(Some(local.as_os_str()), &lib).unwrap();
    let v14 = fs::canonicalize(v14).unwrap();
    assert_eq!(found.initdb, v14.join("initdb"));
    assert_eq!(found.psql, v14.join("psql"));
}

#[test]
fn psql_comes_from_path_when_the_installation_has_none() {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("lib");
    let bin = install(&lib, "15");
    fs::remove_file(bin.join("psql")).unwrap();
    let usr_bin = root.path().join("usr-bin");
    program(&usr_bin.join("psql"));
    let found = find_programs_in(Some(usr_bin.as_os_str()), &lib).unwrap();
    assert_eq!(found.psql, usr_bin.join("psql"));
}

#[test]
fn nothing_installed_is_not_installed() {
    let root = tempfile::tempdir().unwrap();
    let e = find_programs_in(None, &root.path().join("no-such-lib")).unwrap_err();
    assert!(matches!(e, PgTestError::NotInstalled(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("initdb") && text.contains("`postgresql`"),
        "{text}"
    );
}

#[test]
fn database_names_are_checked() {
    for ok in ["a", "ledger_1", "_x", &"a".repeat(63)] {
        check_name(ok).unwrap();
    }
    for bad in [
        "",
        "1a",
        "A",
        "a-b",
        "a\"b",
        "a b",
        "a/b",
        "é",
        &"a".repeat(64),
    ] {
        assert!(
            matches!(check_name(bad), Err(PgTestError::InvalidName(_))),
            "{bad:?}"
        );
    }
}

/// The race of a free port taken before the server binds it: the start moves on to another.
#[test]
fn a_taken_port_is_retried_on_another() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut ports = vec![taken_port, taken_port];
    let server = PgServer::start_on(
        || match ports.pop() {
            Some(p) => Ok(p),
            None => free_port(),
        },
        None,
    );
    let Some(server) = server.map_or_else(skip_or_panic, Some) else {
        return;
    };
    assert_ne!(server.port(), taken_port);
    assert_eq!(server.psql("postgres", "select 1").unwrap().trim(), "1");
    let log = server.log();
    assert!(log.contains("Address already in use"), "{log}");
}
