//! SIGTERM and SIGINT: every session closed with 1000, the event stream ended
//! properly, exit status 0 well within `[api] shutdown_timeout`.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use ccr_sim::SimEvent;

use crate::support::{self, Sse, SseNext, Supervisor};

const IDS: [&str; 3] = ["g1", "g2", "g3"];
/// `[api] shutdown_timeout` of these tests.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// "Well before" the deadline: a clean shutdown against a responsive server.
const EXPECTED_WITHIN: Duration = Duration::from_millis(2500);

async fn graceful(signal: i32, name: &str) {
    let sim = support::start_sim(&IDS).await;
    let mut sim_events = sim.subscribe();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = support::config_toml(
        &sim.base_url(),
        &IDS,
        &dir.path().join("ledger.db"),
        "shutdown_timeout = \"5s\"",
    );
    let cfg = support::write_file(dir.path(), "config.toml", &cfg);
    let mut sup = Supervisor::spawn(&cfg).await;
    let http = support::http();

    // Every session connected, as the simulator sees it ...
    let mut conns: HashMap<String, u64> = HashMap::new();
    while conns.len() < IDS.len() {
        if let SimEvent::Connected {
            session,
            connection,
        } = support::wait_sim(&mut sim_events, |e| matches!(e, SimEvent::Connected { .. })).await
        {
            assert!(
                conns.insert(session.clone(), connection).is_none(),
                "{session} connected twice before the signal"
            );
        }
    }
    // ... and as the supervisor sees it (so each has a live socket to close).
    let mut sse = support::open_sse(&http, &sup.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &IDS).await;

    let started = Instant::now();
    sup.signal(signal);
    // Read the event stream to its end while the process shuts down.
    let (stream_end, status) = tokio::join!(read_to_end(&mut sse, started), async {
        let status = sup
            .wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(3))
            .await;
        (status, started.elapsed())
    });
    let (status, exit_after) = status;
    eprintln!("{name}: exited after {exit_after:?} with {status}; SSE {stream_end:?}");

    assert_eq!(
        status.code(),
        Some(0),
        "{name}: exit status {status} (signal {:?})",
        status.signal()
    );
    // The stream must be ended by the shutdown itself, not cut when the server
    // gives up at its deadline (that also looks like a clean end to awc, which
    // is why the time matters: checked against a build that skips the bus close).
    assert!(
        matches!(stream_end.0, SseNext::End),
        "{name}: SSE stream did not end properly: {stream_end:?}"
    );
    assert!(
        stream_end.1 < EXPECTED_WITHIN,
        "{name}: SSE stream hung for {:?} after the signal",
        stream_end.1
    );
    assert!(
        exit_after < EXPECTED_WITHIN,
        "{name}: exit took {exit_after:?}, shutdown_timeout is {SHUTDOWN_TIMEOUT:?}"
    );

    // The simulator saw every connection end ...
    let mut open: HashMap<u64, String> = conns.iter().map(|(s, c)| (*c, s.clone())).collect();
    while !open.is_empty() {
        if let SimEvent::Disconnected {
            session,
            connection,
        } = support::wait_sim(&mut sim_events, |e| {
            matches!(e, SimEvent::Disconnected { .. })
        })
        .await
        {
            assert_eq!(
                open.remove(&connection).as_deref(),
                Some(session.as_str()),
                "unexpected disconnect of {session} #{connection}"
            );
        }
    }
    assert!(
        IDS.iter().all(|id| !sim.is_connected(id)),
        "no session left connected"
    );
    // ... and each ended with a close handshake at 1000. The simulator does not
    // record close codes, so the supervisor's log is the evidence: it sent 1000,
    // and it received the simulator's close frame, which echoes the code it got.
    let stderr = sup.stderr_all().await;
    for id in IDS {
        let logged = |what: &str| {
            stderr
                .lines()
                .any(|l| l.contains(what) && l.contains(&format!("session_id={id}}}")))
        };
        assert!(
            logged("closing connection (1000)"),
            "{name}: no `closing connection (1000)` for {id} in stderr:\n{stderr}"
        );
        assert!(
            logged("server closed the connection code=1000"),
            "{name}: the simulator did not echo close 1000 for {id}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("did not all close in time") && !stderr.contains("did not stop in time"),
        "{name}: shutdown hit its deadline:\n{stderr}"
    );
    // The ledger was closed, not just flushed: no journal, WAL or shared-memory file left
    // (the instance lock file stays, unlocked: see docs/ledger.md).
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read the temp dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["config.toml", "ledger.db", "ledger.db.lock"],
        "{name}: files left"
    );
    sim.stop().await;
}

/// Read `sse` until it ends or breaks; returns how and when (since `started`).
async fn read_to_end<S>(sse: &mut Sse<S>, started: Instant) -> (SseNext, Duration)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    loop {
        match sse.next(SHUTDOWN_TIMEOUT + Duration::from_secs(3)).await {
            SseNext::Event(_) => {}
            end => return (end, started.elapsed()),
        }
    }
}

#[actix_rt::test]
async fn sigterm_closes_every_session_ends_streams_and_exits_0() {
    graceful(libc::SIGTERM, "SIGTERM").await;
}

#[actix_rt::test]
async fn sigint_closes_every_session_ends_streams_and_exits_0() {
    graceful(libc::SIGINT, "SIGINT").await;
}
