//! `Type=notify` with a real datagram socket in place of systemd's: `READY=1` once the
//! API answers, `WATCHDOG=1` at half of `WATCHDOG_USEC`, `STOPPING=1` on `SIGTERM`.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::support::{self, Setup, Supervisor, WAIT};

/// Bind `path` as systemd's notification socket; every datagram read from it (one
/// line per state, as `sd_notify` sends) arrives on the channel, from a thread of its own.
fn notify_socket(path: &std::path::Path) -> mpsc::UnboundedReceiver<String> {
    let sock = UnixDatagram::bind(path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        // Ends when the test drops the receiver (checked at each read timeout).
        while !tx.is_closed() {
            if let Ok(n) = sock.recv(&mut buf) {
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    rx
}

/// Read datagrams until one holds the line `state`; the datagrams read, in order.
async fn wait_for(rx: &mut mpsc::UnboundedReceiver<String>, state: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(msg) = rx.recv().await {
            let hit = msg.lines().any(|l| l == state);
            seen.push(msg);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{state} not received within {WAIT:?}; got {seen:?}"
    );
    seen
}

#[actix_rt::test]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let setup = Setup::new(&["sd-1"], "").await;
    let path = setup.dir.path().join("notify.sock");
    let mut rx = notify_socket(&path);
    let mut sup = Supervisor::spawn_with_env(
        &setup.cfg,
        &[
            ("NOTIFY_SOCKET", path.to_str().expect("utf-8")),
            // 300 ms: a ping every 150 ms.
            ("WATCHDOG_USEC", "300000"),
        ],
    )
    .await;

    let before_ready = wait_for(&mut rx, "READY=1").await;
    assert_eq!(
        before_ready.len(),
        1,
        "READY=1 comes first: {before_ready:?}"
    );
    // Sent once the API was bound and the sessions started: it answers now.
    let (status, body) = support::get(&support::http(), &format!("{}/readyz", sup.api)).await;
    assert_eq!(status, 200, "{body}");

    wait_for(&mut rx, "WATCHDOG=1").await;
    wait_for(&mut rx, "WATCHDOG=1").await;

    sup.signal(libc::SIGTERM);
    wait_for(&mut rx, "STOPPING=1").await;
    let status = sup.wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
}
