//! `cargo xtask test [ARGS...]`: the README's test command.
//!
//! It installs what the browser tests need (Debian's `chromium` and `chromium-driver`) when
//! either binary is missing, then runs `cargo test --features test-hooks ARGS...` at the
//! workspace root with `CCR_BROWSER_TESTS=required`, so the console tests run (and fail
//! loudly when the browser cannot start) instead of being skipped. It exits with cargo's status.

use std::path::{Path, PathBuf};
use std::process::{exit, Command, ExitStatus};

/// What the console tests drive; the paths Debian's packages install.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server of `chromium-driver`.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The Debian packages that provide the two binaries above.
const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => {
            let rest: Vec<String> = args.collect();
            if let Err(e) = ensure_browser() {
                eprintln!("xtask: {e}");
                exit(1);
            }
            exit(run_tests(&rest));
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [CARGO TEST ARGS...]\n\n\
                 Installs {} (apt-get) when {CHROMIUM} or {CHROMEDRIVER} is missing, then runs\n\
                 `cargo test --features test-hooks ARGS...` with CCR_BROWSER_TESTS=required.",
                PACKAGES.join(" and ")
            );
            exit(2);
        }
    }
}

/// Install the browser and its driver unless both are already there.
fn ensure_browser() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    eprintln!(
        "xtask: {CHROMIUM} or {CHROMEDRIVER} is missing; installing {} with apt-get",
        PACKAGES.join(" ")
    );
    let prefix = privilege_prefix()?;
    let install = |prefix: &[&str]| {
        let mut cmd = command(prefix, "apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(PACKAGES);
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
                "could not install {} with apt-get; install Debian's packages {} by hand \
                 (they provide {CHROMIUM} and {CHROMEDRIVER}) and run `cargo xtask test` again",
                PACKAGES.join(" and "),
                PACKAGES.join(" and ")
            ));
        }
    }
    if !(Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()) {
        return Err(format!(
            "apt-get installed {} but {CHROMIUM} or {CHROMEDRIVER} is still missing",
            PACKAGES.join(" ")
        ));
    }
    Ok(())
}

/// Nothing when running as root, `sudo` otherwise; an error when neither can install packages.
fn privilege_prefix() -> Result<Vec<&'static str>, String> {
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
            PACKAGES.join(" and "),
            PACKAGES.join(" ")
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
        .env("CCR_BROWSER_TESTS", "required");
    eprintln!("xtask: running {cmd:?} with CCR_BROWSER_TESTS=required");
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
