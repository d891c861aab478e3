//! The binary's own command line: `--version` with the commit, shell completions, man page.

use std::process::Command;

use crate::support::BIN;

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run the binary");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let shown = run(&["--version"]);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let want = head.unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        shown.trim(),
        format!("ccr-supervisor {} ({want})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_cover_every_shell_and_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        for word in ["ccr-supervisor", "check-config", "ctl"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh-9000"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_is_roff_with_every_subcommand() {
    let page = run(&["manpage"]);
    assert!(page.contains(".TH ccr-supervisor 1"), "{page}");
    for word in ["check\\-config", "completions", "manpage", "ctl"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
}
