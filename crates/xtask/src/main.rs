//! `cargo xtask test [ARGS...]`: the README's test command.
//!
//! It installs the system programs some tests drive, from Debian's packages, when one is
//! missing: the browser of the console tests (`chromium`, `chromium-driver`), Prometheus'
//! `promtool` (`prometheus`) for the metrics and alert-rule checks, and PostgreSQL
//! (`postgresql`), whose `initdb` and `pg_ctl` the tests of the PostgreSQL backend start
//! throwaway servers with (crates/ccr-pgtest). Then it runs
//! `cargo test --features test-hooks ARGS...` at the workspace root with
//! `CCR_BROWSER_TESTS=required` and `CCR_SYSTEM_TESTS=required`, so those tests run (and
//! fail loudly when a program cannot start) instead of being skipped. It exits with cargo's
//! status.

use std::path::{Path, PathBuf};
use std::process::{exit, Command, ExitStatus};

/// The programs tests drive, each with the Debian package that installs it there. A `*`
/// stands for one directory of any name: PostgreSQL's programs are under its major version
/// (`/usr/lib/postgresql/15/bin` on Debian 12), which `postgresql` picks.
const NEEDED: [(&str, &str); 4] = [
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    ("/usr/bin/promtool", "prometheus"),
    ("/usr/lib/postgresql/*/bin/initdb", "postgresql"),
];

/// The packages whose program is missing.
fn missing() -> Vec<&'static str> {
    NEEDED
        .iter()
        .filter(|(path, _)| !present(path))
        .map(|(_, package)| *package)
        .collect()
}

/// True when `path` exists; a `*` component matches any one directory (`a/*/b`: some `a/x/b`).
fn present(path: &str) -> bool {
    match path.split_once("/*/") {
        None => Path::new(path).exists(),
        Some((dir, rest)) => std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| present(&format!("{}/{rest}", e.path().display())))
        }),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => {
            let rest: Vec<String> = args.collect();
            if let Err(e) = ensure_programs() {
                eprintln!("xtask: {e}");
                exit(1);
            }
            exit(run_tests(&rest));
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [CARGO TEST ARGS...]\n\n\
                 Installs what is missing of {} (apt-get), then runs `cargo test --features\n\
                 test-hooks ARGS...` with CCR_BROWSER_TESTS=required and CCR_SYSTEM_TESTS=required.",
                NEEDED.map(|(_, p)| p).join(", ")
            );
            exit(2);
        }
    }
}

/// Install the packages of the programs that are missing (none: nothing to do).
fn ensure_programs() -> Result<(), String> {
    let packages = missing();
    if packages.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} with apt-get (a test needs what they provide)",
        packages.join(" ")
    );
    let prefix = privilege_prefix(&packages)?;
    let install = |prefix: &[&str]| {
        let mut cmd = command(prefix, "apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages);
        run(cmd)
    };
    // The package lists may be missing or stale on a fresh machine: update only if needed.
    if !install(&prefix)? {
        eprintln!("xtask: apt-get install failed; running apt-get update and trying again");
        let mut update = command(&prefix, "apt-get");
        update
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("update");
        if !run(update)? || !install(&prefix)? {
            return Err(format!(
                "could not install {} with apt-get; install these Debian packages by hand \
                 and run `cargo xtask test` again",
                packages.join(" ")
            ));
        }
    }
    let still = missing();
    if !still.is_empty() {
        return Err(format!(
            "apt-get ran, but what {} provide is still missing",
            still.join(" ")
        ));
    }
    Ok(())
}

/// Nothing when running as root, `sudo` otherwise; an error when neither can install packages.
fn privilege_prefix(packages: &[&str]) -> Result<Vec<&'static str>, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid == "0" {
        return Ok(vec![]);
    }
    let has_sudo = Command::new("sudo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_sudo {
        // `env` inside sudo: sudo's policy may refuse to preserve variables from outside.
        Ok(vec!["sudo", "env", "DEBIAN_FRONTEND=noninteractive"])
    } else {
        Err(format!(
            "installing {} needs root, and sudo is not available; run `apt-get install {}` \
             as root (or install sudo), then run `cargo xtask test` again",
            packages.join(" and "),
            packages.join(" ")
        ))
    }
}

/// `program` run through `prefix` (e.g. `sudo`).
fn command(prefix: &[&str], program: &str) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
    }
}

/// Run `cmd` with inherited stdio; Ok(success), or an error if it could not start.
fn run(mut cmd: Command) -> Result<bool, String> {
    eprintln!("xtask: running {cmd:?}");
    cmd.status()
        .map(|s| s.success())
        .map_err(|e| format!("could not run {:?}: {e}", cmd.get_program()))
}

/// `cargo test --features test-hooks ARGS...` at the workspace root; its exit code.
fn run_tests(args: &[String]) -> i32 {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // `cargo run` gave this process the package's variables (CARGO_MANIFEST_DIR, CARGO_PKG_*,
    // ...). Passed on, build scripts that watch them (ring's does) would rerun and rebuild
    // half the tree on every switch between `cargo xtask test` and a plain `cargo test`.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(workspace_root())
        .args(["test", "--features", "test-hooks"])
        .args(args)
        .env("CCR_BROWSER_TESTS", "required")
        .env("CCR_SYSTEM_TESTS", "required");
    eprintln!("xtask: running {cmd:?} with CCR_BROWSER_TESTS=required CCR_SYSTEM_TESTS=required");
    match cmd.status() {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("xtask: could not run cargo: {e}");
            1
        }
    }
}

/// The workspace root (this crate is `crates/xtask`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's exit code; 1 when it was killed by a signal.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::present;

    #[test]
    fn a_star_matches_any_one_directory() {
        let root = std::env::temp_dir().join(format!("xtask-present-{}", std::process::id()));
        let bin = root.join("lib/15/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("initdb"), "").unwrap();
        let lib = root.join("lib").display().to_string();
        assert!(present(&format!("{lib}/15/bin/initdb")));
        assert!(present(&format!("{lib}/*/bin/initdb")));
        assert!(!present(&format!("{lib}/*/bin/pg_ctl")));
        assert!(!present(&format!("{lib}/*/*/initdb/x")));
        assert!(!present(&format!("{}/none/*/bin/initdb", root.display())));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
