//! `ctl watch` in a real terminal: the binary's `ctl watch` on a pseudo-terminal (libc's
//! `posix_openpt`, no extra tool) against a real supervisor process. Prompts pending
//! before it starts are listed first, oldest first, then live ones follow; colours on.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::json;

use crate::support::{self, Setup, Supervisor, WAIT};

/// A pseudo-terminal: the master side, and the slave's path for the child.
fn open_pty() -> (OwnedFd, String) {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes into our buffer.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(master);
        use std::os::fd::AsRawFd;
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .expect("utf-8 pts path")
            .to_owned();
        (master, path)
    }
}

/// `text` without CSI sequences (our colours) and carriage returns (the terminal's `\r\n`).
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Lines the terminal shows, read on a thread from the master side.
fn terminal_lines(master: OwnedFd) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = File::from(master);
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once every slave descriptor is closed.
        while let Ok(n @ 1..) = file.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line[..pos]).into_owned();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Read terminal lines until one contains `needle` (within [`WAIT`]); all lines read, plain.
fn read_until(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = plain(&line);
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); the terminal showed: {seen:#?}"),
        }
    }
}

#[actix_rt::test]
async fn watch_on_a_terminal_lists_pending_prompts_first() {
    let setup = Setup::new(&["s1"], "").await;
    let sup = Supervisor::spawn(&setup.cfg).await;
    let http = support::http();
    let mut sse = support::open_sse(&http, &sup.api).await;
    let mut events = Vec::new();
    sse.wait_connected(&mut events, &["s1"]).await;
    for (r, cmd) in [("p-old-1", "make one"), ("p-old-2", "make two")] {
        assert!(setup.sim.prompt("s1", r, "Bash", json!({ "command": cmd })));
        sse.wait_for(&mut events, |e| support::is_requested(e, r))
            .await;
    }

    let (master, slave_path) = open_pty();
    let slave = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave_path)
            .expect("open the pty's slave side")
    };
    let mut child = Command::new(support::BIN)
        .args(["ctl", "--url", &sup.api, "watch"])
        .env("CCR_SUPERVISOR_TOKEN", support::ADMIN_TOKEN)
        .env_remove("CCR_SUPERVISOR_URL")
        .env_remove("NO_COLOR")
        .stdin(Stdio::from(slave()))
        .stdout(Stdio::from(slave()))
        .stderr(Stdio::from(slave()))
        .spawn()
        .expect("spawn ctl watch");
    let rx = terminal_lines(master);

    let seen = actix_rt::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        read_until(&rx, "watching events", &mut seen);
        (seen, rx)
    })
    .await
    .unwrap();
    let (mut seen, rx) = seen;
    let listed: Vec<&String> = seen.iter().filter(|l| l.contains(" PERMISSION ")).collect();
    assert_eq!(listed.len(), 2, "{seen:#?}");
    assert!(
        listed[0].ends_with("PERMISSION s1 p-old-1 Bash: make one"),
        "{seen:#?}"
    );
    assert!(
        listed[1].ends_with("PERMISSION s1 p-old-2 Bash: make two"),
        "{seen:#?}"
    );
    assert!(
        listed[0].split(' ').next().unwrap().ends_with('Z'),
        "{seen:#?}"
    );
    assert_eq!(
        seen[0], "2 pending (oldest first); live events follow",
        "{seen:#?}"
    );

    assert!(setup
        .sim
        .prompt("s1", "p-new", "Bash", json!({ "command": "make three" })));
    let seen_all = actix_rt::task::spawn_blocking(move || {
        read_until(&rx, "PERMISSION s1 p-new Bash: make three", &mut seen);
        seen
    })
    .await
    .unwrap();
    let old_again = seen_all
        .iter()
        .filter(|l| l.contains("PERMISSION s1 p-old"))
        .count();
    assert_eq!(old_again, 2, "each pending prompt once: {seen_all:#?}");

    // Ctrl-C as the terminal sends it: exit 0.
    // SAFETY: a signal to our own child, by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = actix_rt::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(sup);
}
