//! A clustered session whose lease lapsed connects again once the lease is valid, even
//! when nothing reports the renewal: its heartbeat looks (the lease loop reports only
//! renewals of leases it had marked lapsed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ccr_sim::{Script, SimBuilder, SimEvent};

use crate::cluster::Fences;
use crate::config::load_from_str;
use crate::events::{BusLimits, EventBus};
use crate::limits::fd::ConnSlots;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::policy::Policy;
use crate::registry::PermissionRegistry;
use crate::session::{SessionActor, SessionReport, SessionShared, HANDSHAKES_IN_FLIGHT};

/// Takes the session's state reports (a supervisor would).
struct Reports;

impl Actor for Reports {
    type Context = Context<Self>;
}

impl Handler<SessionReport> for Reports {
    type Result = ();

    fn handle(&mut self, _: SessionReport, _: &mut Context<Self>) {}
}

/// Session `s1` of `base_url`, started under `fences` (no ledger, no policy); its spec
/// and its event bus.
fn start_session(
    base_url: String,
    fences: &Arc<Fences>,
    ping_interval: &str,
) -> (
    Arc<crate::config::SessionSpec>,
    EventBus,
    Addr<SessionActor>,
) {
    let config = load_from_str(
        &format!(
            r#"
[ccr]
base_url = "{}"
organization_uuid = "org-1"
ping_interval = "{ping_interval}"

[api]
auth = "disabled"

[[sessions]]
id = "s1"
token = "tok-1"
"#,
            base_url,
        ),
        HashMap::new(),
    )
    .unwrap();
    let spec = config.sessions[0].clone();
    let bus = EventBus::new(BusLimits::default());
    let metrics = Metrics::new();
    let registry = PermissionRegistry::new(
        bus.clone(),
        Arc::new(Policy::default()),
        None,
        metrics.clone(),
    )
    .start();
    let shared = Arc::new(SessionShared {
        source_addresses: Arc::from([]),
        base_url,
        reconnect: Arc::new(config.reconnect.clone()),
        ccr: config.ccr.clone(),
        registry,
        reports: Reports.start().recipient(),
        bus: bus.clone(),
        metrics,
        slots: ConnSlots::new(16, 1024),
        handshakes: Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT)),
        notifier: Notifier::none(),
        fences: Some(fences.clone()),
    });
    // Runs as long as the test's system.
    let session = SessionActor::new(spec.clone(), shared, 1).start();
    (spec, bus, session)
}

#[actix_rt::test]
async fn a_session_waiting_for_its_lease_connects_when_a_heartbeat_finds_it_renewed() {
    let sim = SimBuilder::new()
        .session("s1", "tok-1", Script::default())
        .start()
        .await
        .unwrap();
    let mut seen = sim.subscribe();
    let fences = Fences::new("inst-a");
    // Held, but lapsed by its local deadline: no attempt may be made under it.
    fences.hold(&Arc::from("s1"), 1, Instant::now());
    let (spec, _, _session) = start_session(sim.base_url(), &fences, "100ms");

    // Several heartbeats pass while the lease is lapsed: nothing connects.
    let quiet = tokio::time::timeout(Duration::from_millis(500), seen.recv()).await;
    assert!(quiet.is_err(), "connected without a lease: {quiet:?}");
    assert_eq!(sim.attempts("s1"), 0);

    // Renewed, and no `LeaseRenewed` sent: the next heartbeat sees it and connects.
    fences.hold(&spec.id, 1, Instant::now() + Duration::from_secs(60));
    let event = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("no connection within 10 s of the renewal")
        .unwrap();
    assert!(
        matches!(&event, SimEvent::Connected { session, .. } if session == "s1"),
        "{event:?}"
    );
}

#[actix_rt::test]
async fn a_lease_lost_during_the_handshake_closes_the_socket_unused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A CCR endpoint that holds its 101 until the test has taken the lease away: a new
    // owner may have connected meanwhile, and this socket must not be kept or written to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let fences = Fences::new("inst-a");
    fences.hold(
        &Arc::from("s1"),
        1,
        Instant::now() + Duration::from_secs(60),
    );
    let _session = start_session(base_url, &fences, "100ms");
    let (mut sock, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the session connects")
        .unwrap();
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(sock.read(&mut byte).await.unwrap(), 1, "request cut short");
        request.push(byte[0]);
    }
    let request = String::from_utf8(request).unwrap();
    let key = request
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-key:")
                .then(|| l[18..].trim().to_owned())
        })
        .expect("a websocket handshake");
    // Lost, and held again at another epoch (taken over and given back) before the 101.
    fences.drop_lease("s1");
    fences.hold(
        &Arc::from("s1"),
        2,
        Instant::now() + Duration::from_secs(60),
    );
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).unwrap();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    sock.write_all(response.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut got))
        .await
        .expect("the socket is closed");
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "closed without a frame, got {read:?}: {got:?}"
    );
    assert!(
        got.is_empty(),
        "sent on a socket opened under a lost lease: {got:?}"
    );
    // Tried again under the lease as it is now.
    let again = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    assert!(again.is_ok(), "no new attempt under the new epoch");
}

/// Whether the next reply the simulator receives is the one to request `id`.
async fn next_reply_is(seen: &mut tokio::sync::broadcast::Receiver<SimEvent>, id: &str) -> bool {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a reply within 10 s")
            .unwrap();
        if let SimEvent::Received { frame, .. } = event {
            if let Some(to) = frame["response"]["request_id"].as_str() {
                return to == id;
            }
        }
    }
}

#[actix_rt::test]
async fn a_lapsed_owner_does_not_answer_even_a_request_it_cannot_handle() {
    let sim = SimBuilder::new()
        .session("s1", "tok-1", Script::default())
        .start()
        .await
        .unwrap();
    let mut seen = sim.subscribe();
    let fences = Fences::new("inst-a");
    let s1: Arc<str> = Arc::from("s1");
    fences.hold(&s1, 1, Instant::now() + Duration::from_secs(60));
    // No heartbeat within the test: the renewal is seen only when reported.
    let (_, bus, session) = start_session(sim.base_url(), &fences, "1h");
    let mut events = bus.subscribe();
    let unsupported = |id: &str| {
        serde_json::json!({"type":"control_request","request_id": id,
            "request":{"subtype":"no_such_subtype"}})
    };
    while !matches!(
        tokio::time::timeout(Duration::from_secs(10), seen.recv()).await,
        Ok(Ok(SimEvent::Connected { .. }))
    ) {}
    // Held: the request is answered with an error, as the protocol asks.
    assert!(sim.push("s1", unsupported("held")));
    assert!(next_reply_is(&mut seen, "held").await);
    // Lapsed by its local deadline, the socket still open: nothing is sent. Frames are
    // handled in order, so once the SDK message after it is published the lapsed request
    // was handled too; renewed, the next request is answered, and its reply is the first
    // since (one to the lapsed request would have come before it on the same socket).
    fences.hold(&s1, 1, Instant::now());
    assert!(sim.push("s1", unsupported("lapsed")));
    assert!(sim.push(
        "s1",
        serde_json::json!({"type":"system","subtype":"marker"})
    ));
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the marker is published")
            .unwrap();
        if matches!(&e.event, crate::events::Event::SdkMessage { .. }) {
            break;
        }
    }
    fences.hold(&s1, 1, Instant::now() + Duration::from_secs(60));
    assert!(sim.push("s1", unsupported("renewed")));
    assert!(
        next_reply_is(&mut seen, "renewed").await,
        "the lapsed request was answered"
    );
    // Its reply was kept, and is written once the renewal is seen (reported by the
    // lease loop, or at a heartbeat): the session is not left waiting.
    session.do_send(crate::session::LeaseRenewed);
    assert!(next_reply_is(&mut seen, "lapsed").await);
}
