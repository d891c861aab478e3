//! The lease loop against a real PostgreSQL (`ccr-pgtest`; skipped with a notice when
//! PostgreSQL is not installed, unless `CCR_SYSTEM_TESTS=required`), with actors that
//! record what each member was told. Leases last a second (two in the restart test), so
//! every test runs in a few seconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use parking_lot::Mutex;
use tokio_postgres::{Client, NoTls};

use super::*;
use crate::cluster::plan::Epoch;
use crate::cluster::StateNote;
use crate::cluster::{DecidedElsewhere, SeenElsewhere};
use ccr_protocol::session::SessionState;

mod sessions;

const PERIOD: Duration = Duration::from_secs(1);

/// What a member told the actors, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Own(Arc<str>, Epoch),
    Disown(Arc<str>, bool),
    Decided(Arc<str>, String),
    /// Re-check every pending prompt of the session (after the LISTEN connection was down).
    Recheck(Arc<str>),
    /// A prompt of a session held elsewhere was recorded (`false`) or decided (`true`).
    Seen(Arc<str>, String, bool),
    /// A lapsed lease was renewed.
    Resumed(Arc<str>),
    /// A session state announced by another member: session, from, epoch, state.
    State(Arc<str>, String, Epoch, SessionState),
    /// Announce every state held here again.
    Announce,
    /// The session set the supervisor is to have, by id.
    Set(Vec<Arc<str>>),
}

/// Everything one member told, shared with the test.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<Told>>>);

impl Log {
    fn all(&self) -> Vec<Told> {
        self.0.lock().clone()
    }

    /// Sessions owned now by what was told: each `Own` until its `Disown`.
    fn owned(&self) -> BTreeMap<Arc<str>, Epoch> {
        let mut owned = BTreeMap::new();
        for t in self.all() {
            match t {
                Told::Own(s, e) => {
                    assert!(owned.insert(s.clone(), e).is_none(), "{s} owned twice");
                }
                Told::Disown(s, _) => {
                    assert!(owned.remove(&s).is_some(), "{s} disowned, never owned");
                }
                Told::Decided(..)
                | Told::Recheck(_)
                | Told::Seen(..)
                | Told::State(..)
                | Told::Announce
                | Told::Resumed(_)
                | Told::Set(_) => {}
            }
        }
        owned
    }

    fn disowned(&self) -> Vec<(Arc<str>, bool)> {
        let all = self.all().into_iter();
        all.filter_map(|t| match t {
            Told::Disown(s, lost) => Some((s, lost)),
            _ => None,
        })
        .collect()
    }

    fn owns(&self) -> Vec<(Arc<str>, Epoch)> {
        let all = self.all().into_iter();
        all.filter_map(|t| match t {
            Told::Own(s, e) => Some((s, e)),
            _ => None,
        })
        .collect()
    }

    fn resumed(&self) -> Vec<Arc<str>> {
        let all = self.all().into_iter();
        all.filter_map(|t| match t {
            Told::Resumed(s) => Some(s),
            _ => None,
        })
        .collect()
    }

    /// The states announced by others, as (session, from, epoch, state).
    fn states(&self) -> Vec<(Arc<str>, String, Epoch, SessionState)> {
        let all = self.all().into_iter();
        all.filter_map(|t| match t {
            Told::State(s, f, e, st) => Some((s, f, e, st)),
            _ => None,
        })
        .collect()
    }

    fn announces(&self) -> usize {
        self.all()
            .iter()
            .filter(|t| matches!(t, Told::Announce))
            .count()
    }

    fn decided(&self) -> Vec<(Arc<str>, String)> {
        let all = self.all().into_iter();
        all.filter_map(|t| match t {
            Told::Decided(s, r) => Some((s, r)),
            _ => None,
        })
        .collect()
    }
}

/// The supervisor and the registry, as far as a member is concerned: a recorder.
struct Recorder(Log);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Own> for Recorder {
    type Result = ();
    fn handle(&mut self, m: Own, _: &mut Context<Self>) {
        self.0 .0.lock().push(Told::Own(m.session, m.epoch));
    }
}

impl Handler<Disown> for Recorder {
    type Result = ();
    fn handle(&mut self, m: Disown, _: &mut Context<Self>) {
        self.0 .0.lock().push(Told::Disown(m.session, m.lost));
    }
}

impl Handler<SeenElsewhere> for Recorder {
    type Result = ();
    fn handle(&mut self, m: SeenElsewhere, _: &mut Context<Self>) {
        self.0
             .0
            .lock()
            .push(Told::Seen(m.session, m.request_id, m.decided));
    }
}

impl Handler<Resumed> for Recorder {
    type Result = ();
    fn handle(&mut self, m: Resumed, _: &mut Context<Self>) {
        self.0 .0.lock().push(Told::Resumed(m.session));
    }
}

impl Handler<StateElsewhere> for Recorder {
    type Result = ();
    fn handle(&mut self, m: StateElsewhere, _: &mut Context<Self>) {
        let n = m.0;
        self.0
             .0
            .lock()
            .push(Told::State(n.session, n.from, n.epoch, n.state));
    }
}

impl Handler<AnnounceStates> for Recorder {
    type Result = ();
    fn handle(&mut self, _: AnnounceStates, _: &mut Context<Self>) {
        self.0 .0.lock().push(Told::Announce);
    }
}

/// Answered once everything sent to the recorder before it is handled.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Recorder {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

impl Handler<SessionSet> for Recorder {
    type Result = Option<ccr_protocol::reply::NameChanges>;
    fn handle(&mut self, m: SessionSet, _: &mut Context<Self>) -> Self::Result {
        let ids = m.0.iter().map(|s| s.id.clone()).collect();
        self.0 .0.lock().push(Told::Set(ids));
        Some(ccr_protocol::reply::NameChanges::default())
    }
}

impl Handler<DecidedElsewhere> for Recorder {
    type Result = ();
    fn handle(&mut self, m: DecidedElsewhere, _: &mut Context<Self>) {
        self.0 .0.lock().push(match m.request_id {
            Some(r) => Told::Decided(m.session, r),
            None => Told::Recheck(m.session),
        });
    }
}

/// One running member with what it was told.
struct Node {
    id: String,
    member: Option<ClusterMember>,
    fences: Arc<Fences>,
    outbox: Arc<StateOutbox>,
    log: Log,
    /// What the member tells: its messages are handled in the order they were sent.
    recorder: Addr<Recorder>,
}

impl Node {
    /// A member with `[cluster] outage_grace = "0s"`: a lease not renewed in time is let go.
    fn start(url: &str, id: &str, sessions: &[Arc<str>], period: Duration) -> Node {
        Node::start_with(url, id, sessions, period, Duration::ZERO)
    }

    /// A member keeping lapsed leases for `grace`.
    fn start_with(
        url: &str,
        id: &str,
        sessions: &[Arc<str>],
        period: Duration,
        grace: Duration,
    ) -> Node {
        Node::start_on(url, id, sessions, period, grace, Fences::new(id))
    }

    /// A member over `fences` (which may hold leases already).
    fn start_on(
        url: &str,
        id: &str,
        sessions: &[Arc<str>],
        period: Duration,
        grace: Duration,
        fences: Arc<Fences>,
    ) -> Node {
        let outbox = StateOutbox::new();
        let log = Log::default();
        let addr = Recorder(log.clone()).start();
        let cfg = ClusterConfig {
            instance_id: id.into(),
            advertise_url: Some(url::Url::parse(&format!("http://{id}.test:8700")).unwrap()),
            lease_period: period,
            outage_grace: grace,
            ca_file: None,
        };
        let start = StartSessions {
            configured: sessions.iter().map(|s| spec(s)).collect(),
            rules: RuntimeTokenRules::default(),
        };
        let to = Recipients {
            owner: addr.clone().recipient(),
            disowner: addr.clone().recipient(),
            decided: addr.clone().recipient(),
            seen: addr.clone().recipient(),
            sessions: addr.clone().recipient(),
            states: addr.clone().recipient(),
            announce: addr.clone().recipient(),
            resumed: addr.clone().recipient(),
            restart: addr.clone().recipient(),
        };
        let member =
            ClusterMember::start(target(url), &cfg, start, fences.clone(), outbox.clone(), to)
                .expect("start");
        Node {
            id: id.into(),
            member: Some(member),
            fences,
            outbox,
            log,
            recorder: addr,
        }
    }

    fn member(&self) -> &ClusterMember {
        self.member.as_ref().expect("running")
    }

    fn stats(&self) -> Arc<ClusterStats> {
        self.member().stats()
    }
}

/// A configured session `id` (its token is never read here).
fn spec(id: &str) -> Arc<crate::config::SessionSpec> {
    Arc::new(crate::config::SessionSpec {
        id: Arc::from(id),
        labels: Vec::new(),
        token: crate::config::TokenSpec::Env("CCR_TEST_UNUSED".into()),
        viewer_only: false,
        base_url: None,
        organization_uuid: None,
    })
}

/// How the service reaches `url`: as `[ledger] url_file` names it.
fn target(url: &str) -> Arc<PgTarget> {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), url).expect("write the URL");
    let pg = crate::config::PostgresConfig {
        url: crate::config::PgUrlSource::File(file.path().to_owned()),
        pool_size: 1,
        statement_timeout: Duration::from_secs(5),
        ca_file: None,
    };
    Arc::new(PgTarget::from_config(&pg).expect("a PostgreSQL URL"))
}

/// A fresh database with the service's schema, and a connection to it; `None` when skipped.
async fn database(name: &str) -> Option<(String, Client)> {
    let pg = ccr_pgtest::require()?;
    let url = pg.unique_database(name).expect("create database");
    Some(migrated(url).await)
}

async fn migrated(url: String) -> (String, Client) {
    let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    actix_rt::spawn(connection);
    crate::ledger::pg::schema::migrate(&mut client)
        .await
        .expect("migrate");
    (url, client)
}

fn sessions(n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| Arc::from(format!("sess_{i:03}"))).collect()
}

/// Valid leases by session: owner and epoch.
async fn table(admin: &Client) -> BTreeMap<Arc<str>, (String, Epoch)> {
    store::leases(admin)
        .await
        .expect("leases")
        .into_iter()
        .filter(|l| l.expired_for.is_none())
        .map(|l| (l.session_id, (l.owner, l.epoch)))
        .collect()
}

/// Retry `check` every 20 ms until it passes; panics with its last complaint after `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > within => panic!("not within {within:?}: {e}"),
            Err(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Every configured session held exactly once, as the table, the members' logs and their
/// fences all say.
async fn settled(admin: &Client, nodes: &[&Node], all: &[Arc<str>]) -> Result<(), String> {
    let rows = table(admin).await;
    if rows.len() != all.len() {
        return Err(format!("{} of {} leases held", rows.len(), all.len()));
    }
    for n in nodes {
        let theirs: BTreeMap<Arc<str>, Epoch> = rows
            .iter()
            .filter(|(_, (o, _))| *o == n.id)
            .map(|(s, (_, e))| (s.clone(), *e))
            .collect();
        if n.log.owned() != theirs {
            return Err(format!("{}'s Own messages differ from the table", n.id));
        }
        for (s, e) in &theirs {
            if n.fences.epoch(s) != Some(*e) {
                return Err(format!("{}'s fence of {s} is not at {e}", n.id));
            }
        }
    }
    Ok(())
}

/// [`settled`], retried every 20 ms for up to `within`; how long it took.
async fn wait_settled(
    admin: &Client,
    nodes: &[&Node],
    all: &[Arc<str>],
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        match settled(admin, nodes, all).await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > within => panic!("not settled within {within:?}: {e}"),
            Err(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Samples the members' fences every few milliseconds until dropped; panics on drop if a
/// session was ever held by two at once.
struct OneHolder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl OneHolder {
    fn watch(nodes: &[&Node], all: &[Arc<str>]) -> Self {
        let fences: Vec<(String, Arc<Fences>)> = nodes
            .iter()
            .map(|n| (n.id.clone(), n.fences.clone()))
            .collect();
        let all = all.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                for s in &all {
                    let holders: Vec<&str> = fences
                        .iter()
                        .filter(|(_, f)| f.epoch(s).is_some())
                        .map(|(id, _)| id.as_str())
                        .collect();
                    if holders.len() > 1 {
                        seen.push(format!("{s} held by {holders:?}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn check(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.thread.take().unwrap().join().unwrap();
        assert!(seen.is_empty(), "two holders at once: {seen:?}");
    }
}

/// Every `(session, epoch)` was owned by one member only.
fn assert_epochs_owned_once(nodes: &[&Node]) {
    let mut seen: HashMap<(Arc<str>, Epoch), &str> = HashMap::new();
    for n in nodes {
        for key in n.log.owns() {
            if let Some(other) = seen.insert(key.clone(), &n.id) {
                panic!("{key:?} owned by {other} and {}", n.id);
            }
        }
    }
}

/// Three members over `n` sessions, settled.
async fn three(admin: &Client, url: &str, n: usize) -> (Vec<Arc<str>>, [Node; 3]) {
    let all = sessions(n);
    let nodes = ["a", "b", "c"].map(|id| Node::start(url, id, &all, PERIOD));
    let took = wait_settled(
        admin,
        &[&nodes[0], &nodes[1], &nodes[2]],
        &all,
        Duration::from_secs(10),
    )
    .await;
    eprintln!("{n} sessions over 3 members settled in {took:?}");
    (all, nodes)
}

#[actix_rt::test]
async fn three_members_split_300_sessions_evenly_and_own_what_the_table_says() {
    let Some((url, admin)) = database("member_split").await else {
        return;
    };
    let (all, nodes) = three(&admin, &url, 300).await;
    let rows = table(&admin).await;
    for n in &nodes {
        let load = rows.values().filter(|(o, _)| *o == n.id).count();
        assert!((90..=110).contains(&load), "{}: {load}", n.id);
        assert_eq!(n.stats().leases_held.get(), load as i64);
        assert_eq!(n.stats().members.get(), 3);
        assert!(n.log.disowned().is_empty(), "nothing let go while settling");
    }
    let status = nodes[0].member().status().await.expect("status");
    assert_eq!(status.instance_id, "a");
    let ids: Vec<&str> = status
        .members
        .iter()
        .map(|m| m.instance_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let listed: usize = status.members.iter().map(|m| m.sessions.len()).sum();
    assert_eq!(listed, all.len());
    let b = &status.members[1];
    assert_eq!(b.advertise_url.as_deref(), Some("http://b.test:8700/"));
    assert!(!b.draining && b.heartbeat_age_ms < 1000);
    let first = &b.sessions[0];
    assert_eq!(
        rows[first.session_id.as_str()],
        ("b".to_owned(), first.epoch)
    );
}

#[actix_rt::test]
async fn a_killed_member_s_sessions_are_owned_by_the_others_within_two_periods() {
    let Some((url, admin)) = database("member_kill").await else {
        return;
    };
    let (all, [a, b, mut c]) = three(&admin, &url, 300).await;
    let orphans: Vec<Arc<str>> = c.log.owned().into_keys().collect();
    let watch = OneHolder::watch(&[&a, &b, &c], &all);
    drop(c.member.take()); // kill -9: nothing released
    let took = eventually(2 * PERIOD + PERIOD / 2, || async {
        let (a_owns, b_owns) = (a.log.owned(), b.log.owned());
        let left = orphans
            .iter()
            .filter(|s| !a_owns.contains_key(*s) && !b_owns.contains_key(*s))
            .count();
        if left > 0 {
            return Err(format!(
                "{left} of the killed member's sessions not owned yet"
            ));
        }
        Ok(())
    })
    .await;
    eprintln!("failover of {} sessions took {took:?}", orphans.len());
    assert!(took <= 2 * PERIOD, "failover took {took:?}");
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(2)).await;
    let takeovers = a.stats().takeovers.get() + b.stats().takeovers.get();
    assert_eq!(takeovers, orphans.len() as u64);
    watch.check();
    assert_epochs_owned_once(&[&a, &b, &c]);
}

#[actix_rt::test]
async fn a_drained_member_hands_every_session_over_and_leaves() {
    let Some((url, admin)) = database("member_drain").await else {
        return;
    };
    let (all, [a, b, c]) = three(&admin, &url, 300).await;
    let handed: BTreeMap<Arc<str>, Epoch> = c.log.owned();
    let watch = OneHolder::watch(&[&a, &b, &c], &all);
    let started = Instant::now();
    c.member().drain(Duration::from_secs(10)).await;
    eprintln!(
        "drained {} sessions in {:?}",
        handed.len(),
        started.elapsed()
    );
    let disowned = c.log.disowned();
    assert_eq!(disowned.len(), handed.len());
    assert!(disowned.iter().all(|(_, lost)| !lost), "none lost");
    assert!(c.fences.held().is_empty());
    assert_eq!(c.stats().leases_held.get(), 0);
    let members = store::members(&admin, Duration::from_secs(3600))
        .await
        .unwrap();
    let ids: Vec<&str> = members.iter().map(|m| m.instance_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "its member row is gone");
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(3)).await;
    watch.check();
    assert_epochs_owned_once(&[&a, &b, &c]);
}

#[actix_rt::test]
async fn a_paused_member_lets_go_at_its_deadline_and_never_owns_what_another_holds() {
    let Some((url, admin)) = database("member_pause").await else {
        return;
    };
    let all = sessions(60);
    // The default grace: b keeps its sockets, lapsed, until a renewal says the leases are gone.
    let grace = crate::config::DEFAULT_OUTAGE_GRACE;
    let a = Node::start_with(&url, "a", &all, PERIOD, grace);
    let b = Node::start_with(&url, "b", &all, PERIOD, grace);
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    let paused: Vec<Arc<str>> = b.log.owned().into_keys().collect();
    assert!(!paused.is_empty());
    let watch = OneHolder::watch(&[&a, &b], &all);
    let resumes = Instant::now() + 3 * PERIOD;
    b.member().pause(3 * PERIOD);
    // Its last renewal was sent before the pause: every deadline passes within a period,
    // though its loop does not run to let go.
    actix_rt::time::sleep(PERIOD + Duration::from_millis(20)).await;
    for s in &paused {
        assert_eq!(b.fences.epoch(s), None, "{s} still fenced for b");
    }
    assert!(b.log.disowned().is_empty(), "paused: not told yet");
    eventually(2 * PERIOD, || async {
        let rows = table(&admin).await;
        match paused
            .iter()
            .find(|s| rows.get(*s).is_none_or(|(o, _)| o != "a"))
        {
            Some(s) => Err(format!("{s} not taken over by a")),
            None => Ok(()),
        }
    })
    .await;
    assert!(Instant::now() < resumes, "taken over while b was paused");
    eventually(resumes - Instant::now() + PERIOD, || async {
        let lost: HashSet<Arc<str>> = b.log.disowned().into_iter().map(|(s, _)| s).collect();
        match paused.iter().find(|s| !lost.contains(*s)) {
            Some(s) => Err(format!("b not told it lost {s}")),
            None => Ok(()),
        }
    })
    .await;
    for (s, lost) in b.log.disowned() {
        assert!(lost, "{s}: lost, not handed over");
    }
    // Back in the cluster, b takes sessions only as a hands them over.
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(2)).await;
    watch.check();
    assert_epochs_owned_once(&[&a, &b]);
}

/// A pending prompt of `session`, then its decision (as another instance records it).
async fn decide(admin: &Client, session: &str, request: &str) {
    admin
        .execute(
            "INSERT INTO ccr_prompts (session_id, request_id, tool_name, input, request, received_at)
             VALUES ($1, $2, 'Bash', '{}', '{}', 0)",
            &[&session, &request],
        )
        .await
        .expect("insert prompt");
    admin
        .execute(
            "UPDATE ccr_prompts SET outcome = 'allowed', decided_by = 'operator', decided_at = 1
             WHERE session_id = $1 AND request_id = $2",
            &[&session, &request],
        )
        .await
        .expect("decide");
}

/// Decide a prompt of a session each node holds (a sentinel) until each has heard of one
/// (its LISTEN may not be up yet): notifications arrive in commit order, so every one
/// before the sentinel it heard was handled too.
async fn heard_up_to_here(admin: &Client, nodes: &[&Node], request: &str) {
    for n in nodes {
        let (s, _) = n.log.owned().pop_first().expect("holds a session");
        let mut heard = false;
        for attempt in 0..20 {
            let request = format!("{request}_{attempt}");
            decide(admin, &s, &request).await;
            let wait = Instant::now() + Duration::from_millis(250);
            while !heard && Instant::now() < wait {
                heard = n.log.decided().contains(&(s.clone(), request.clone()));
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            if heard {
                break;
            }
        }
        assert!(heard, "{} never heard of a decision for {s}", n.id);
    }
}

#[actix_rt::test]
async fn a_decision_recorded_elsewhere_reaches_the_session_s_owner_only() {
    let Some((url, admin)) = database("member_notify").await else {
        return;
    };
    let all = sessions(6);
    let a = Node::start(&url, "a", &all, PERIOD);
    let b = Node::start(&url, "b", &all, PERIOD);
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    // LISTEN starts with the member, but not necessarily before its first claims.
    heard_up_to_here(&admin, &[&a, &b], "warm_up").await;
    for s in &all {
        decide(&admin, s, "r1").await;
    }
    decide(&admin, "not_configured", "r1").await;
    heard_up_to_here(&admin, &[&a, &b], "sentinel").await;
    for n in [&a, &b] {
        let heard: HashSet<Arc<str>> = n
            .log
            .decided()
            .into_iter()
            .filter(|(_, r)| r == "r1")
            .map(|(s, _)| s)
            .collect();
        let owned: HashSet<Arc<str>> = n.log.owned().into_keys().collect();
        assert_eq!(heard, owned, "{} hears of its own sessions only", n.id);
    }
}

impl Node {
    /// Announce `state` of `session` as this member's supervisor would (under the epoch
    /// it holds the session at, or `epoch` if it does not).
    fn announce(&self, session: &Arc<str>, epoch: Epoch, state: SessionState) {
        self.outbox.push(&StateNote {
            from: self.id.clone(),
            session: session.clone(),
            epoch: self.fences.epoch(session).unwrap_or(epoch),
            state,
            last_error: None,
        });
    }
}

/// A member's session states reach every other member, as sent (in order, the last of a
/// burst), except for a session the hearer holds itself; a member does not hear its own;
/// and a member that starts listening asks the others to announce everything again.
#[actix_rt::test]
async fn session_states_announced_by_an_owner_reach_the_other_members() {
    let Some((url, admin)) = database("member_states").await else {
        return;
    };
    let all = sessions(4);
    let a = Node::start(&url, "a", &all, PERIOD);
    let b = Node::start(&url, "b", &all, PERIOD);
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    let (sa, _) = a.log.owned().pop_first().expect("a holds one");
    let (sb, eb) = b.log.owned().pop_first().expect("b holds one");
    // Until b listens (it may have started after a's first announcement).
    let mut heard = false;
    for _ in 0..20 {
        a.announce(&sa, 0, SessionState::Connecting);
        let wait = Instant::now() + Duration::from_millis(250);
        while !heard && Instant::now() < wait {
            heard = !b.log.states().is_empty();
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        if heard {
            break;
        }
    }
    assert!(heard, "b never heard a's state");
    a.announce(&sa, 0, SessionState::Connected);
    // Held by b: b's own state wins, its announcement by another is not passed on.
    a.announce(&sb, eb - 1, SessionState::Disconnected);
    b.announce(&sb, 0, SessionState::Connected);
    let ea = a.fences.epoch(&sa).expect("held");
    eventually(Duration::from_secs(5), || async {
        let (at_a, at_b) = (a.log.states(), b.log.states());
        let want_b = (sa.clone(), "a".to_owned(), ea, SessionState::Connected);
        let want_a = (sb.clone(), "b".to_owned(), eb, SessionState::Connected);
        match at_b.last() == Some(&want_b) && at_a == [want_a] {
            true => Ok(()),
            false => Err(format!("a heard {at_a:?}; b heard {at_b:?}")),
        }
    })
    .await;
    assert!(
        b.log.states().iter().all(|(s, ..)| *s == sa),
        "b hears nothing of its own session: {:?}",
        b.log.states()
    );
    let before = (a.log.announces(), b.log.announces());
    let c = Node::start(&url, "c", &all, PERIOD);
    eventually(Duration::from_secs(5), || async {
        match a.log.announces() > before.0 && b.log.announces() > before.1 {
            true => Ok(()),
            false => Err("the newcomer's resync request not heard".into()),
        }
    })
    .await;
    drop(c);
}

/// One statement recording many prompts notifies once per statement, in as many
/// notifications as PostgreSQL's 8000-byte payload limit needs, and one deciding them once
/// per prompt decided (schema migration 7): every prompt is heard, the decisions of sessions
/// held here as decisions, the rest as seen elsewhere.
#[actix_rt::test]
async fn a_statement_writing_many_prompts_is_heard_for_each_of_them() {
    let Some((url, admin)) = database("member_notify_many").await else {
        return;
    };
    let all = sessions(3);
    let a = Node::start(&url, "a", &all, PERIOD);
    wait_settled(&admin, &[&a], &all, Duration::from_secs(10)).await;
    heard_up_to_here(&admin, &[&a], "warm_up").await;
    // 4 sessions × 200 prompts with 60-byte ids: about 60 KB of keys a statement.
    let mut names: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    names.push("held_elsewhere".into());
    admin
        .execute(
            "INSERT INTO ccr_prompts (session_id, request_id, tool_name, input, request, received_at)
             SELECT s, 'many_' || repeat('x', 50) || g, 'Bash', '{}', '{}', 0
             FROM unnest($1::text[]) s, generate_series(1, 200) g",
            &[&names],
        )
        .await
        .expect("insert");
    admin
        .execute(
            "UPDATE ccr_prompts SET outcome = 'allowed', decided_by = 'operator', decided_at = 1
             WHERE request_id LIKE 'many_%'",
            &[],
        )
        .await
        .expect("decide");
    let many = |r: &str| r.starts_with("many_");
    eventually(Duration::from_secs(10), || async {
        let told = a.log.all();
        let decided: HashSet<(Arc<str>, String)> = a.log.decided().into_iter().collect();
        let decided = decided.iter().filter(|(_, r)| many(r)).count();
        let seen = |d: bool| {
            let seen = told.iter().filter_map(|t| match t {
                Told::Seen(s, r, decided) if *decided == d && many(r) => Some((s, r)),
                _ => None,
            });
            seen.collect::<HashSet<_>>().len()
        };
        match (decided, seen(false), seen(true)) {
            (600, 200, 200) => Ok(()),
            other => Err(format!("decided, seen recorded, seen decided: {other:?}")),
        }
    })
    .await;
}

/// Terminate every connection to the test's database but `admin`'s (the member's
/// leases outlive its reconnect).
async fn cut_every_other_connection(admin: &Client) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate");
}

/// A decision made while the listening connection was down is never notified to it: once
/// it listens again, the member asks for a re-check of every session it still holds.
#[actix_rt::test]
async fn after_its_listening_connection_drops_a_member_rechecks_the_sessions_it_holds() {
    let Some((url, admin)) = database("member_relisten").await else {
        return;
    };
    let all = sessions(4);
    let a = Node::start(&url, "a", &all, 2 * PERIOD);
    wait_settled(&admin, &[&a], &all, Duration::from_secs(10)).await;
    heard_up_to_here(&admin, &[&a], "warm_up").await;
    // Every connection of the member is cut (its leases outlive the reconnect).
    cut_every_other_connection(&admin).await;
    eventually(Duration::from_secs(10), || async {
        let rechecked: HashSet<Arc<str>> = a
            .log
            .0
            .lock()
            .iter()
            .filter_map(|t| match t {
                Told::Recheck(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let owned: HashSet<Arc<str>> = a.log.owned().into_keys().collect();
        match !owned.is_empty() && owned.is_subset(&rechecked) {
            true => Ok(()),
            false => Err(format!("re-checked {rechecked:?} of {owned:?}")),
        }
    })
    .await;
    assert!(a.stats().listen_reconnects.get() > 0);
}

/// What other instances recorded while the listening connection was down was notified to
/// nobody here: once it listens again, the member reads it from the ledger and publishes
/// it, so its event stream carries every session's permission events.
#[actix_rt::test]
async fn after_its_listening_connection_drops_a_member_publishes_what_it_missed() {
    let Some((url, admin)) = database("member_catch_up").await else {
        return;
    };
    let all = sessions(2);
    let a = Node::start(&url, "a", &all, 2 * PERIOD);
    wait_settled(&admin, &[&a], &all, Duration::from_secs(10)).await;
    heard_up_to_here(&admin, &[&a], "warm_up").await;
    // Recorded elsewhere, for a session held elsewhere, and never notified (as if it
    // committed while the connection was down): with triggers off for this insert.
    let now_ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    admin
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO ccr_prompts (session_id, request_id, tool_name, input, request, \
             received_at, outcome, decided_by, decided_at) \
             VALUES ('held-by-b', 'missed', 'Bash', '{}', '{}', $1, 'allowed', 'op', $1)",
            &[&now_ms],
        )
        .await
        .expect("insert prompt");
    admin
        .batch_execute("SET session_replication_role = origin")
        .await
        .unwrap();
    cut_every_other_connection(&admin).await;
    eventually(Duration::from_secs(10), || async {
        let told = a.log.0.lock();
        let seen = |decided: bool| {
            told.iter().any(|t| {
                matches!(t, Told::Seen(s, r, d) if &**s == "held-by-b" && r == "missed" && *d == decided)
            })
        };
        match seen(false) && seen(true) {
            true => Ok(()),
            false => Err(format!("not published: {:?}", *told)),
        }
    })
    .await;
    assert!(a.stats().listen_reconnects.get() > 0);
}

/// A lease held before the member first listens (its lease loop connected first, after an
/// outage at start) has its pending prompts re-checked once it listens: a decision recorded
/// elsewhere before was notified to nobody here.
#[actix_rt::test]
async fn a_member_rechecks_the_sessions_it_holds_when_it_first_listens_too() {
    let Some((url, admin)) = database("member_first_listen").await else {
        return;
    };
    let fences = Fences::new("a");
    let early: Arc<str> = Arc::from("claimed_first");
    fences.hold(&early, 1, Instant::now() + Duration::from_secs(60));
    let all = sessions(1);
    let a = Node::start_on(&url, "a", &all, PERIOD, Duration::ZERO, fences);
    wait_settled(&admin, &[&a], &all, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), || async {
        let told = a.log.0.lock();
        match told
            .iter()
            .any(|t| matches!(t, Told::Recheck(s) if *s == early))
        {
            true => Ok(()),
            false => Err(format!("never re-checked: {:?}", *told)),
        }
    })
    .await;
    assert_eq!(a.stats().listen_reconnects.get(), 0, "its first listen");
}

#[actix_rt::test]
async fn the_loop_lets_go_while_the_database_is_down_and_recovers_by_itself() {
    let Some(mut pg) = ccr_pgtest::require_own() else {
        return;
    };
    let (url, admin) = migrated(pg.unique_database("member_restart").unwrap()).await;
    let period = 2 * PERIOD;
    let all = sessions(20);
    let a = Node::start(&url, "a", &all, period);
    let b = Node::start(&url, "b", &all, period);
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    heard_up_to_here(&admin, &[&a, &b], "before").await;
    let watch = OneHolder::watch(&[&a, &b], &all);
    let stopped = Instant::now();
    pg.stop().expect("stop PostgreSQL");
    // Sessions stay owned while their leases are valid...
    let held = all
        .iter()
        .filter(|s| a.fences.epoch(s).is_some() || b.fences.epoch(s).is_some())
        .count();
    assert!(
        held == all.len() || stopped.elapsed() >= period,
        "let go of {} at once",
        all.len() - held
    );
    // ...and are let go when they run out.
    eventually(period + Duration::from_secs(1), || async {
        let owned = a.log.owned().len() + b.log.owned().len();
        match owned {
            0 => Ok(()),
            n => Err(format!("{n} still owned with the database down")),
        }
    })
    .await;
    assert!(
        stopped.elapsed() >= period - period / 3,
        "not before they ran out"
    );
    for n in [&a, &b] {
        assert!(n.log.disowned().iter().all(|(_, lost)| *lost));
        assert!(n.stats().renewals_failed.get() > 0, "{}", n.id);
    }
    pg.resume().expect("start PostgreSQL again");
    let admin = migrated(url.clone()).await.1;
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(15)).await;
    for n in [&a, &b] {
        let load = n.log.owned().len();
        assert!(
            (8..=12).contains(&load),
            "{} holds {load}: rejoined together",
            n.id
        );
    }
    eventually(Duration::from_secs(5), || async {
        match a.stats().listen_reconnects.get() > 0 && b.stats().listen_reconnects.get() > 0 {
            true => Ok(()),
            false => Err("LISTEN not re-established".into()),
        }
    })
    .await;
    heard_up_to_here(&admin, &[&a, &b], "after").await;
    watch.check();
    assert_epochs_owned_once(&[&a, &b]);
}

#[actix_rt::test]
async fn through_a_database_outage_sessions_stay_owned_silent_and_resume_at_their_epochs() {
    let Some(mut pg) = ccr_pgtest::require_own() else {
        return;
    };
    let (url, admin) = migrated(pg.unique_database("member_outage").unwrap()).await;
    let period = 2 * PERIOD;
    let grace = Duration::from_secs(30);
    let all = sessions(20);
    let a = Node::start_with(&url, "a", &all, period, grace);
    let b = Node::start_with(&url, "b", &all, period, grace);
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    let before = [a.log.owned(), b.log.owned()];
    let watch = OneHolder::watch(&[&a, &b], &all);
    pg.stop().expect("stop PostgreSQL");
    // Every deadline passes: nothing may be sent for any session any more...
    eventually(period + Duration::from_secs(1), || async {
        match a.stats().leases_lapsed.get() + b.stats().leases_lapsed.get() {
            n if n == all.len() as i64 => Ok(()),
            n => Err(format!("{n} of {} lapsed", all.len())),
        }
    })
    .await;
    for s in &all {
        assert_eq!(a.fences.epoch(s), None, "{s}: a may still send");
        assert_eq!(b.fences.epoch(s), None, "{s}: b may still send");
    }
    // ...and the outage lasts another period (the scenario itself, not a wait for an
    // event: three lease periods out in all, as 30 s is for the default period).
    actix_rt::time::sleep(period).await;
    for n in [&a, &b] {
        assert!(n.log.disowned().is_empty(), "{}: nothing let go", n.id);
        assert_eq!(
            n.stats().leases_held.get(),
            before[usize::from(n.id == "b")].len() as i64
        );
    }
    pg.resume().expect("start PostgreSQL again");
    // Back: each renews its own leases at their epochs, and they act again (the fences
    // first, then the registry is told).
    eventually(3 * period, || async {
        for (n, had) in [&a, &b].into_iter().zip(&before) {
            for (s, epoch) in had {
                if n.fences.epoch(s) != Some(*epoch) {
                    return Err(format!("{s} not resumed by {} at {epoch}", n.id));
                }
            }
            if n.log.resumed().len() < had.len() {
                return Err(format!("{} told of {:?}", n.id, n.log.resumed()));
            }
        }
        Ok(())
    })
    .await;
    for (n, had) in [&a, &b].into_iter().zip(&before) {
        let resumed: BTreeMap<Arc<str>, Epoch> = n
            .log
            .resumed()
            .into_iter()
            .map(|s| {
                let epoch = had[&s];
                (s, epoch)
            })
            .collect();
        assert_eq!(&resumed, had, "{}: told of each session once", n.id);
        assert_eq!(&n.log.owned(), had, "{}: no session restarted", n.id);
        assert!(n.log.disowned().is_empty(), "{}", n.id);
        assert_eq!(n.stats().leases_lapsed.get(), 0);
    }
    watch.check();
    assert_epochs_owned_once(&[&a, &b]);
}

#[test]
fn a_member_back_from_an_outage_waits_for_owners_not_yet_back() {
    let lease = |owner: &str, expired: bool| crate::cluster::plan::Lease {
        owner: owner.into(),
        epoch: 1,
        expired_for: expired.then_some(Duration::from_secs(20)),
    };
    let member = |id: &str| crate::cluster::plan::Member {
        id: id.into(),
        draining: false,
        digest: 0,
    };
    let snap = |leases: Vec<(&str, crate::cluster::plan::Lease)>,
                members: Vec<crate::cluster::plan::Member>| Snapshot {
        members,
        leases: leases.into_iter().map(|(s, l)| (Arc::from(s), l)).collect(),
    };
    // b's lease expired and b has not beaten since: it may be on its way back.
    let away = snap(vec![("s1", lease("b", true))], vec![member("a")]);
    assert!(owners_missing(&away, "a"));
    // b is back (a live member): it renews its own, or the planner treats it as usual.
    let back = snap(
        vec![("s1", lease("b", true))],
        vec![member("a"), member("b")],
    );
    assert!(!owners_missing(&back, "a"));
    // Valid leases, and this member's own expired ones, are nobody to wait for.
    let fine = snap(
        vec![("s1", lease("b", false)), ("s2", lease("a", true))],
        vec![member("a")],
    );
    assert!(!owners_missing(&fine, "a"));
}
