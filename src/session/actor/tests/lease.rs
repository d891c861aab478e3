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

#[actix_rt::test]
async fn a_session_waiting_for_its_lease_connects_when_a_heartbeat_finds_it_renewed() {
    let sim = SimBuilder::new()
        .session("s1", "tok-1", Script::default())
        .start()
        .await
        .unwrap();
    let mut seen = sim.subscribe();
    let config = load_from_str(
        &format!(
            r#"
[ccr]
base_url = "{}"
organization_uuid = "org-1"
ping_interval = "100ms"

[api]
auth = "disabled"

[[sessions]]
id = "s1"
token = "tok-1"
"#,
            sim.base_url()
        ),
        HashMap::new(),
    )
    .unwrap();
    let spec = config.sessions[0].clone();
    let fences = Fences::new("inst-a");
    // Held, but lapsed by its local deadline: no attempt may be made under it.
    fences.hold(&spec.id, 1, Instant::now());
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
        base_url: sim.base_url(),
        reconnect: Arc::new(config.reconnect.clone()),
        ccr: config.ccr.clone(),
        registry,
        reports: Reports.start().recipient(),
        bus,
        metrics,
        slots: ConnSlots::new(16, 1024),
        handshakes: Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT)),
        notifier: Notifier::none(),
        fences: Some(fences.clone()),
    });
    let _session = SessionActor::new(spec.clone(), shared, 1).start();

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
