//! A cluster of real `ccr-supervisor` processes on one real PostgreSQL (a throwaway
//! server, `ccr-pgtest`) and one simulator: sessions spread over the instances by leases,
//! a `kill -9` moves an instance's sessions and pending prompts to the others, an answer
//! given to any instance is delivered once by the session's owner, two instances answering
//! at once give one 200 and one 409, and an owner paused past its lease writes nothing
//! for the sessions it lost.
//!
//! Who owns what is read from the lease table (no event crosses the process boundary for
//! it), in bounded polls; everything the simulator sees is awaited on its events.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use ccr_pgtest::PgServer;
use ccr_sim::{SimEvent, SimHandle};
use serde_json::{json, Value};

use crate::support::{self, Supervisor};

#[path = "cluster/forwarded.rs"]
mod forwarded;
#[path = "cluster/resume.rs"]
mod resume;
#[path = "cluster/sessions.rs"]
mod sessions;

/// The lease period of these tests: the shortest `[cluster] lease_period` accepts.
const PERIOD: Duration = Duration::from_secs(1);
/// Longest a cluster-wide change (a takeover, a spread) may take here; the bound
/// is 2 lease periods for a takeover, the rest is process start-up on a busy CI machine.
const SETTLE: Duration = Duration::from_secs(30);

/// The cluster's PostgreSQL: the test binary's shared server, or one of the test's own
/// (to restart it).
enum Pg {
    Shared(&'static PgServer),
    Own(PgServer),
}

impl std::ops::Deref for Pg {
    type Target = PgServer;

    fn deref(&self) -> &PgServer {
        match self {
            Pg::Shared(pg) => pg,
            Pg::Own(pg) => pg,
        }
    }
}

/// Instances sharing one database, over one simulator.
struct Cluster {
    pg: Pg,
    database: String,
    url: String,
    sim: SimHandle,
    _dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    instances: Vec<Option<Supervisor>>,
    /// Environment of each instance beyond the shared one (by index; none past its end).
    env: Vec<Vec<(String, String)>>,
    /// A config of its own for instance `i` instead of `cfg` (by index; none past its end).
    own_cfg: Vec<Option<std::path::PathBuf>>,
}

impl Cluster {
    /// `n` instances (`inst-0`...) over `sessions`, started at once; `None` when PostgreSQL
    /// is not installed (and not required). `extra` goes at the end of the shared config.
    async fn start(n: usize, sessions: &[String], extra: &str) -> Option<Cluster> {
        Some(Self::start_on(Pg::Shared(ccr_pgtest::require()?), n, sessions, extra).await)
    }

    /// [`Cluster::start`] on `pg`.
    async fn start_on(pg: Pg, n: usize, sessions: &[String], extra: &str) -> Cluster {
        Self::start_with_env(pg, n, sessions, extra, Vec::new()).await
    }

    /// [`Cluster::start_on`], instance `i` with `env[i]` in its environment too.
    async fn start_with_env(
        pg: Pg,
        n: usize,
        sessions: &[String],
        extra: &str,
        env: Vec<Vec<(String, String)>>,
    ) -> Cluster {
        let url = pg.unique_database("cluster").expect("database");
        let database = url.rsplit('/').next().expect("name").to_owned();
        let ids: Vec<&str> = sessions.iter().map(String::as_str).collect();
        let sim = support::start_sim(&ids).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg =
            support::config_toml(&sim.base_url(), &ids, &dir.path().join("unused.db"), "");
        cfg.push_str(extra);
        let cfg = support::write_file(dir.path(), "config.toml", &cfg);
        let mut c = Cluster {
            pg,
            database,
            url,
            sim,
            _dir: dir,
            cfg,
            instances: Vec::new(),
            env,
            own_cfg: Vec::new(),
        };
        let spawns: Vec<_> = (0..n).map(|i| c.spawn(i)).collect();
        c.instances = futures_util::future::join_all(spawns)
            .await
            .into_iter()
            .map(Some)
            .collect();
        c
    }

    /// Start instance `i` (a future, so several start at once).
    fn spawn(&self, i: usize) -> impl std::future::Future<Output = Supervisor> {
        let cfg = match self.own_cfg.get(i) {
            Some(Some(own)) => own.clone(),
            _ => self.cfg.clone(),
        };
        let url = self.url.clone();
        let period = format!("{}s", PERIOD.as_secs());
        let own_env = self.env.get(i).cloned().unwrap_or_default();
        // A fixed port, so that the other instances can be told where this one is (its
        // advertise URL defaults to `[api] bind`).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        async move {
            let id = format!("inst-{i}");
            let bind = format!("127.0.0.1:{port}");
            let mut env = vec![
                ("CCR_SUPERVISOR__API__BIND", bind.as_str()),
                ("CCR_SUPERVISOR__LEDGER__BACKEND", "postgres"),
                ("CCR_SUPERVISOR__LEDGER__URL_ENV", "CCR_TEST_LEDGER_URL"),
                ("CCR_TEST_LEDGER_URL", &url),
                ("CCR_SUPERVISOR__CLUSTER__INSTANCE_ID", &id),
                ("CCR_SUPERVISOR__CLUSTER__LEASE_PERIOD", &period),
            ];
            env.extend(own_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            Supervisor::spawn_with_env(&cfg, &env).await
        }
    }

    fn api(&self, i: usize) -> String {
        self.instances[i].as_ref().expect("running").api.clone()
    }

    /// `SELECT` in the cluster's database, one `|`-separated line a row.
    fn sql(&self, query: &str) -> Vec<String> {
        self.pg
            .psql(&self.database, query)
            .expect("psql")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Live leases: session → owner.
    fn owners(&self) -> BTreeMap<String, String> {
        self.sql("SELECT session_id, owner FROM ccr_leases WHERE expires_at > now()")
            .into_iter()
            .filter_map(|l| l.split_once('|').map(|(s, o)| (s.to_owned(), o.to_owned())))
            .collect()
    }

    /// Poll the lease table until `done` holds (bounded by [`SETTLE`]); the owners then.
    async fn until(
        &self,
        what: &str,
        mut done: impl FnMut(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let owners = self.owners();
            if done(&owners) {
                return owners;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {SETTLE:?}; leases: {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:03}")).collect()
}

/// `n` instances over `count` sessions, started and settled: every session owned, by all
/// `n`, and connected. `None` when PostgreSQL is not installed (and not required).
async fn settled(
    n: usize,
    count: usize,
) -> Option<(Cluster, Vec<String>, BTreeMap<String, String>)> {
    let sessions = ids(count);
    let c = Cluster::start(n, &sessions, "").await?;
    let owners = c
        .until(&format!("all owned by {n}"), |o| {
            o.len() == count && load(o).len() == n
        })
        .await;
    all_connected(&c.sim, &sessions).await;
    Some((c, sessions, owners))
}

/// A session `instance` owns.
fn owned_by(owners: &BTreeMap<String, String>, instance: &str) -> String {
    owners
        .iter()
        .find(|(_, o)| *o == instance)
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| panic!("{instance} owns a session: {owners:?}"))
}

fn load(owners: &BTreeMap<String, String>) -> HashMap<String, usize> {
    let mut load = HashMap::new();
    for o in owners.values() {
        *load.entry(o.clone()).or_default() += 1;
    }
    load
}

/// Wait until every session in `sessions` has a live connection at the simulator.
async fn all_connected(sim: &SimHandle, sessions: &[String]) {
    let deadline = Instant::now() + SETTLE;
    let mut events = sim.subscribe();
    loop {
        let missing: Vec<&String> = sessions.iter().filter(|s| !sim.is_connected(s)).collect();
        if missing.is_empty() {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "not connected within {SETTLE:?}: {missing:?}"
        );
        let _ = tokio::time::timeout(left, events.recv()).await;
    }
}

/// The pending prompts `api` lists (cluster-wide), as (session, request, owner).
async fn pending(http: &awc::Client, api: &str) -> Vec<(String, String, Value)> {
    let (status, body) = support::get(http, &format!("{api}/v1/permissions")).await;
    assert_eq!(status, 200, "{body}");
    body["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .map(|p| {
            (
                p["session_id"].as_str().unwrap_or_default().to_owned(),
                p["request_id"].as_str().unwrap_or_default().to_owned(),
                p["owner"].clone(),
            )
        })
        .collect()
}

/// Poll `api`'s cluster-wide list until it shows `request_id` (recorded by its owner).
async fn listed(http: &awc::Client, api: &str, request_id: &str) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some((_, _, owner)) = pending(http, api)
            .await
            .into_iter()
            .find(|(_, r, _)| r == request_id)
        {
            return owner;
        }
        assert!(
            Instant::now() < deadline,
            "{request_id} never listed by {api}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn three_instances_share_300_sessions_evenly() {
    let sessions = ids(300);
    let Some(c) = Cluster::start(3, &sessions, "").await else {
        return;
    };
    let owners = c
        .until("300 sessions owned, 90 to 110 each", |o| {
            let l = load(o);
            o.len() == 300 && l.len() == 3 && l.values().all(|n| (90..=110).contains(n))
        })
        .await;
    all_connected(&c.sim, &sessions).await;
    eprintln!("spread over 3 instances: {:?}", load(&owners));
}

#[actix_rt::test]
async fn after_a_kill_9_the_survivors_take_over_and_a_pending_prompt_is_answered_once() {
    let Some((mut c, _, owners)) = settled(3, 30).await else {
        return;
    };
    let http = support::http();
    let mut sim_events = c.sim.subscribe();

    // A prompt of a session inst-0 owns, recorded there (listed by another instance).
    let victim = owned_by(&owners, "inst-0");
    assert!(c
        .sim
        .prompt(&victim, "before-kill", "Bash", json!({"command": "make"})));
    assert_eq!(
        listed(&http, &c.api(1), "before-kill").await,
        json!("inst-0")
    );

    let dead: Vec<String> = owners
        .iter()
        .filter(|(_, o)| *o == "inst-0")
        .map(|(s, _)| s.clone())
        .collect();
    let killed_at = Instant::now();
    let mut first = c.instances[0].take().expect("inst-0");
    first.signal(libc::SIGKILL);
    let status = first.wait_exit(support::WAIT).await;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let owners = c
        .until("inst-0's sessions taken over", |o| {
            o.len() == 30 && o.values().all(|owner| owner != "inst-0")
        })
        .await;
    let took = killed_at.elapsed();
    all_connected(&c.sim, &dead).await;
    eprintln!(
        "takeover of {} sessions: leases in {took:?}, lease period {PERIOD:?}",
        dead.len()
    );
    // Within 2 lease periods (plus one round of polling here).
    assert!(took <= 2 * PERIOD + Duration::from_millis(700), "{took:?}");

    // The prompt is pending again, owned by a survivor; answered through the other one.
    let new_owner = owners[&victim].clone();
    let other = if new_owner == "inst-1" { 2 } else { 1 };
    assert_eq!(
        listed(&http, &c.api(other), "before-kill").await,
        json!(new_owner)
    );
    let (status, receipt) = support::post(
        &http,
        &format!(
            "{}/v1/sessions/{victim}/permissions/before-kill",
            c.api(other)
        ),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "before-kill"),
    )
    .await;
    // Barrier: a later prompt on the same connection answered through its owner.
    ask(&c.sim, &victim, "barrier").await;
    let owner = if new_owner == "inst-1" { 1 } else { 2 };
    listed(&http, &c.api(owner), "barrier").await;
    answer_via(&c, owner, &mut sim_events, (&victim, "barrier")).await;
    assert_eq!(
        support::answers(&c.sim, &victim, "before-kill").len(),
        1,
        "answered exactly once"
    );
}

#[actix_rt::test]
async fn two_instances_answering_one_prompt_at_once_give_one_200_one_409_and_one_frame() {
    let Some((c, sessions, owners)) = settled(2, 6).await else {
        return;
    };
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    for (round, session) in sessions.iter().enumerate() {
        let rid = format!("race-{round}");
        assert!(c
            .sim
            .prompt(session, &rid, "Bash", json!({"command": "rm -rf /tmp/x"})));
        listed(&http, &c.api(0), &rid).await;
        listed(&http, &c.api(1), &rid).await;
        let urls = [0, 1].map(|i| format!("{}/v1/sessions/{session}/permissions/{rid}", c.api(i)));
        let ((a, ra), (b, rb)) = tokio::join!(
            support::post(&http, &urls[0], json!({"behavior": "allow"})),
            support::post(
                &http,
                &urls[1],
                json!({"behavior": "deny", "message": "raced"})
            ),
        );
        let mut codes = [a, b];
        codes.sort_unstable();
        assert_eq!(codes, [200, 409], "owner {}: {ra} / {rb}", owners[session]);
        let answered = support::wait_sim(
            &mut sim_events,
            |e| matches!(e, SimEvent::Answered { request_id, .. } if *request_id == rid),
        )
        .await;
        let SimEvent::Answered { response, .. } = answered else {
            unreachable!()
        };
        let winner = if a == 200 { "allow" } else { "deny" };
        assert_eq!(
            response["behavior"], winner,
            "the frame is the 200's decision"
        );
    }
    // Barrier on every session, then: one frame each.
    for (round, session) in sessions.iter().enumerate() {
        let rid = format!("after-{round}");
        ask(&c.sim, session, &rid).await;
        let owner = if owners[session] == "inst-0" { 0 } else { 1 };
        listed(&http, &c.api(owner), &rid).await;
        answer_via(&c, owner, &mut sim_events, (session, &rid)).await;
        let race = format!("race-{round}");
        assert_eq!(
            support::answers(&c.sim, session, &race).len(),
            1,
            "{session}"
        );
    }
}

#[actix_rt::test]
async fn an_owner_paused_past_its_lease_writes_nothing_for_the_sessions_it_lost() {
    let Some((c, sessions, owners)) = settled(2, 4).await else {
        return;
    };
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let session = owned_by(&owners, "inst-0");
    // A prompt inst-0 recorded and shows; then inst-0 stops (SIGSTOP) past its lease.
    assert!(c
        .sim
        .prompt(&session, "held", "Bash", json!({"command": "make"})));
    listed(&http, &c.api(1), "held").await;
    let paused = c.instances[0].as_ref().expect("inst-0");
    paused.signal(libc::SIGSTOP);
    c.until("inst-1 took everything", |o| {
        o.len() == 4 && o.values().all(|owner| owner == "inst-1")
    })
    .await;
    all_connected(&c.sim, &sessions).await;
    // inst-1 answers the prompt it adopted (sent, or queued until the session re-sends
    // it on inst-1's connection); the session gets it once.
    answer_via(&c, 1, &mut sim_events, (&session, "held")).await;
    // Its delivery is marked after the write, in the background: wait for the mark.
    let query = format!(
        "SELECT request_id, deliveries FROM ccr_prompts WHERE session_id = '{session}' ORDER BY 1"
    );
    let deadline = Instant::now() + SETTLE;
    let deliveries_before = loop {
        let rows = c.sql(&query);
        if !rows.iter().any(|r| r.ends_with("|0")) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "never marked delivered: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // inst-0 wakes: it must find its leases gone and send nothing.
    paused.signal(libc::SIGCONT);
    let deadline = Instant::now() + SETTLE;
    while !paused.stderr_now().contains("lease lost") {
        assert!(
            Instant::now() < deadline,
            "inst-0 never noticed:\n{}",
            paused.stderr_now()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A barrier after inst-0 had its chance to misbehave. The balance may give inst-0 a
    // session back meanwhile: answered through inst-1, delivered by whichever owns it.
    ask(&c.sim, &session, "after-wake").await;
    listed(&http, &c.api(1), "after-wake").await;
    answer_via(&c, 1, &mut sim_events, (&session, "after-wake")).await;
    assert_eq!(support::answers(&c.sim, &session, "held").len(), 1);
    let deliveries_after = c.sql(&format!(
        "SELECT request_id, deliveries FROM ccr_prompts WHERE session_id = '{session}' AND request_id <> 'after-wake' ORDER BY 1"
    ));
    assert_eq!(
        deliveries_after, deliveries_before,
        "nothing recorded by the paused owner"
    );
}

/// An interrupt posted to an instance that does not run the session is forwarded to the
/// one that does, and its answer comes back; the session gets the interrupt once.
#[actix_rt::test]
async fn an_interrupt_posted_to_a_non_owner_is_forwarded_to_the_owner() {
    let Some((c, _, owners)) = settled(2, 4).await else {
        return;
    };
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let (session, owner) = owners.iter().next().expect("one");
    let other = if owner == "inst-0" { 1 } else { 0 };
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/{session}/interrupt", c.api(other)),
        json!({"cancel_queued": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("still_queued").is_some(),
        "the owner's answer: {body}"
    );
    let frame = support::wait_sim(&mut sim_events, |e| {
        matches!(e, SimEvent::Received { session: s, frame } if s == session
            && frame["request"]["subtype"] == "interrupt")
    })
    .await;
    let SimEvent::Received { frame, .. } = frame else {
        unreachable!()
    };
    assert_eq!(frame["request"]["cancel_queued"], true, "{frame}");
}

/// An instance serving its API over TLS with a certificate of a private CA is reached by
/// the others (forwarded interrupts, relayed event streams) only when they trust that CA
/// with `[cluster] ca_file`: inst-0 does and is answered by the owner; inst-1 does not (the
/// public roots only) and answers 503 `unavailable`, naming the certificate problem.
#[actix_rt::test]
async fn forwarding_to_an_https_owner_trusts_the_cluster_ca_file() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    let pki_dir = tempfile::tempdir().expect("temp dir");
    let pki = crate::tls::Pki::new(pki_dir.path());
    let var = |k: &str, v: String| (k.to_owned(), v);
    let env = vec![
        vec![var("CCR_SUPERVISOR__CLUSTER__CA_FILE", pki.path("ca.pem"))],
        vec![],
        vec![
            var("CCR_SUPERVISOR__API__TLS_CERT", pki.path("cert.pem")),
            var("CCR_SUPERVISOR__API__TLS_KEY", pki.path("key.pem")),
        ],
    ];
    let sessions = ids(6);
    let c = Cluster::start_with_env(Pg::Shared(pg), 3, &sessions, "", env).await;
    let owners = c
        .until("all owned by 3", |o| o.len() == 6 && load(o).len() == 3)
        .await;
    all_connected(&c.sim, &sessions).await;
    assert!(c.api(2).starts_with("https://"), "{}", c.api(2));
    let session = owned_by(&owners, "inst-2");
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let interrupt = |i: usize| format!("{}/v1/sessions/{session}/interrupt", c.api(i));

    let (status, body) = support::post(&http, &interrupt(1), json!({"cancel_queued": true})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("inst-2"), "names the owner: {message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains("[cluster] ca_file"), "{message}");

    let (status, body) = support::post(&http, &interrupt(0), json!({"cancel_queued": true})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("still_queued").is_some(),
        "the owner's answer: {body}"
    );
    support::wait_sim(&mut sim_events, |e| {
        matches!(e, SimEvent::Received { session: s, frame } if *s == session
            && frame["request"]["subtype"] == "interrupt")
    })
    .await;

    // The relayed event stream goes through the same trust.
    let stream = |i: usize| {
        let url = format!("{}/v1/events?session_id={session}", c.api(i));
        http.get(url)
            .insert_header(("accept", "text/event-stream"))
            .send()
    };
    let mut refused = stream(1).await.expect("an answer");
    assert_eq!(refused.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(&refused.body().await.expect("body")).expect("JSON");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("UnknownIssuer"),
        "{body}"
    );
    let relayed = stream(0).await.expect("an answer");
    assert_eq!(relayed.status().as_u16(), 200);
    assert_eq!(
        relayed
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
}

/// A database URL the service cannot read is a configuration error: exit 2 (a restart by
/// systemd cannot help), naming where the URL should come from and never a URL.
#[actix_rt::test]
async fn an_unreadable_database_url_exits_2_naming_its_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = support::config_toml("http://127.0.0.1:9", &["s1"], &dir.path().join("l.db"), "");
    let cfg = support::write_file(dir.path(), "config.toml", &cfg);
    let cfg = cfg.to_str().expect("utf-8");
    let secret = "postgres://admin:hunter2@127.0.0.1:1/x";
    for (var, value) in [
        ("CCR_TEST_URL_UNSET", None),
        ("CCR_TEST_URL_GARBAGE", Some("not a url hunter2 ===")),
    ] {
        let mut cmd = support::command(&["--config", cfg]);
        cmd.env("CCR_SUPERVISOR__LEDGER__BACKEND", "postgres")
            .env("CCR_SUPERVISOR__LEDGER__URL_ENV", var)
            .env("CCR_TEST_UNRELATED", secret);
        if let Some(v) = value {
            cmd.env(var, v);
        }
        let out = tokio::time::timeout(support::WAIT, cmd.output())
            .await
            .expect("exits")
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(var), "names the variable: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// Have `session` ask `request_id` once it is connected (a session may be between owners).
async fn ask(sim: &SimHandle, session: &str, request_id: &str) {
    all_connected(sim, &[session.to_owned()]).await;
    let deadline = Instant::now() + SETTLE;
    while !sim.prompt(session, request_id, "Bash", json!({"command": "make"})) {
        assert!(
            Instant::now() < deadline,
            "{session} never took {request_id}"
        );
        all_connected(sim, &[session.to_owned()]).await;
    }
}

/// Answer `request_id` through instance `via` (whoever owns the session) and wait until the
/// session has the answer.
async fn answer_via(
    c: &Cluster,
    via: usize,
    sim_events: &mut tokio::sync::broadcast::Receiver<SimEvent>,
    (session, request_id): (&str, &str),
) {
    let http = support::http();
    let (status, receipt) = support::post(
        &http,
        &format!(
            "{}/v1/sessions/{session}/permissions/{request_id}",
            c.api(via)
        ),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!(status, 200, "{request_id} via inst-{via}: {receipt}");
    support::wait_sim(
        sim_events,
        |e| matches!(e, SimEvent::Answered { request_id: r, .. } if r == request_id),
    )
    .await;
}

/// Every instance stopped with SIGTERM and started again in turn, with prompts pending on
/// the sessions it owned: each handed its leases over before exiting, and every prompt is
/// answered exactly once.
#[actix_rt::test]
async fn a_rolling_restart_of_every_instance_loses_no_prompt() {
    let sessions = ids(9);
    let Some(mut c) = Cluster::start(3, &sessions, "").await else {
        return;
    };
    c.until("all owned by 3", |o| o.len() == 9 && load(o).len() == 3)
        .await;
    all_connected(&c.sim, &sessions).await;
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let mut asked = Vec::new();
    for i in 0..3 {
        let me = format!("inst-{i}");
        let owners = c.owners();
        // A prompt pending on each session this instance owns, as it stops.
        for (s, _) in owners.iter().filter(|(_, o)| **o == me) {
            let rid = format!("roll-{i}-{s}");
            ask(&c.sim, s, &rid).await;
            listed(&http, &c.api((i + 1) % 3), &rid).await;
            asked.push((s.clone(), rid));
        }
        let mut stopping = c.instances[i].take().expect("running");
        stopping.signal(libc::SIGTERM);
        let status = stopping.wait_exit(support::WAIT).await;
        assert!(status.success(), "inst-{i} stopped cleanly: {status}");
        let stderr = stopping.stderr_all().await;
        assert!(
            !stderr.contains("lease lost"),
            "handed over, not lost:\n{stderr}"
        );
        c.until(&format!("{me}'s sessions handed over"), |o| {
            o.len() == 9 && o.values().all(|owner| *owner != me)
        })
        .await;
        all_connected(&c.sim, &sessions).await;
        c.instances[i] = Some(c.spawn(i).await);
        c.until(&format!("{me} back"), |o| o.len() == 9).await;
    }
    for (k, (s, rid)) in asked.iter().enumerate() {
        answer_via(&c, k % 3, &mut sim_events, (s, rid)).await;
    }
    // Barrier on every session, then: each prompt answered exactly once.
    for (k, s) in sessions.iter().enumerate() {
        let rid = format!("barrier-{s}");
        ask(&c.sim, s, &rid).await;
        listed(&http, &c.api(k % 3), &rid).await;
        answer_via(&c, k % 3, &mut sim_events, (s, &rid)).await;
    }
    for (s, rid) in &asked {
        assert_eq!(support::answers(&c.sim, s, rid).len(), 1, "{s} {rid}");
    }
}

/// PostgreSQL out for three lease periods (30 s for the default period) under a cluster:
/// every instance keeps its sockets (no session reconnects), records and sends nothing
/// meanwhile (answers and interrupts get 503, `/readyz` is 503), and recovers by itself
/// when the database is back: the same owners renew their leases, and a prompt asked
/// before and one asked during the outage are both answered exactly once afterwards.
#[actix_rt::test]
async fn a_database_outage_keeps_every_socket_sends_nothing_and_loses_no_prompt() {
    let Some(pg) = ccr_pgtest::require_own() else {
        return;
    };
    let sessions = ids(4);
    let mut c = Cluster::start_on(Pg::Own(pg), 2, &sessions, "").await;
    let owners = c
        .until("all owned by 2", |o| o.len() == 4 && load(o).len() == 2)
        .await;
    all_connected(&c.sim, &sessions).await;
    let connections: Vec<u32> = sessions.iter().map(|s| c.sim.connections(s)).collect();
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let session = owners.keys().next().expect("one").clone();
    let owner: usize = owners[&session]["inst-".len()..].parse().expect("inst-N");
    assert!(c.sim.prompt(&session, "before", "Bash", json!({})));
    listed(&http, &c.api(0), "before").await;
    let Pg::Own(pg) = &mut c.pg else {
        unreachable!()
    };
    pg.stop().expect("stop PostgreSQL");
    let out = Instant::now();
    // Asked while the database is away: shown by its owner, not recorded yet.
    assert!(c.sim.prompt(&session, "during", "Bash", json!({})));
    for i in 0..2 {
        let (status, body) = support::get(&http, &format!("{}/readyz", c.api(i))).await;
        assert_eq!(
            status, 503,
            "inst-{i} not ready without its database: {body}"
        );
    }
    // Every lease lapses: the instances stop sending, and keep their sockets.
    let deadline = Instant::now() + SETTLE;
    while lapsed(&http, &c, 0).await + lapsed(&http, &c, 1).await < 4 {
        assert!(Instant::now() < deadline, "leases never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The session's connection drops meanwhile: it does not reconnect on its lapsed lease
    // (a connection opened now could take the session from an instance that claimed it),
    // but once the lease is renewed, and replays its prompts then.
    let attempts = c.sim.attempts(&session);
    assert!(c.sim.drop_connection(&session));
    let api = c.api(owner);
    let (status, body) = support::post(
        &http,
        &format!("{api}/v1/sessions/{session}/permissions/before"),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!(status, 503, "an answer cannot be recorded: {body}");
    let (status, body) = support::post(
        &http,
        &format!("{api}/v1/sessions/{session}/interrupt"),
        json!({}),
    )
    .await;
    assert_eq!(status, 503, "nothing is sent on a lapsed lease: {body}");
    // The outage lasts three periods in all (the scenario itself, not a wait for an event).
    tokio::time::sleep((3 * PERIOD).saturating_sub(out.elapsed())).await;
    assert_eq!(
        c.sim.attempts(&session),
        attempts,
        "no attempt to connect on a lapsed lease"
    );
    assert!(!c.sim.is_connected(&session));
    let Pg::Own(pg) = &mut c.pg else {
        unreachable!()
    };
    pg.resume().expect("start PostgreSQL again");
    let back = c.until("every lease renewed", |o| o.len() == 4).await;
    assert_eq!(back, owners, "each owner renewed its own leases");
    for i in 0..2 {
        let deadline = Instant::now() + SETTLE;
        while lapsed(&http, &c, i).await > 0 {
            assert!(Instant::now() < deadline, "inst-{i} never resumed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for rid in ["before", "during"] {
        listed(&http, &c.api(1 - owner), rid).await;
        answer_via(&c, 1 - owner, &mut sim_events, (&session, rid)).await;
    }
    let rid = "barrier";
    assert!(c.sim.prompt(&session, rid, "Read", json!({})));
    listed(&http, &c.api(0), rid).await;
    answer_via(&c, 0, &mut sim_events, (&session, rid)).await;
    for rid in ["before", "during"] {
        assert_eq!(support::answers(&c.sim, &session, rid).len(), 1, "{rid}");
    }
    let after: Vec<u32> = sessions.iter().map(|s| c.sim.connections(s)).collect();
    let expected: Vec<u32> = sessions
        .iter()
        .zip(&connections)
        .map(|(s, n)| if *s == session { n + 1 } else { *n })
        .collect();
    assert_eq!(
        after, expected,
        "no session reconnected but the one dropped, once"
    );
    assert!(
        !sessions.iter().any(|s| c
            .sim
            .received(s)
            .iter()
            .any(|f| f["request"]["subtype"] == "interrupt")),
        "the refused interrupt never went out"
    );
    let rows = c.sql(&format!(
        "SELECT request_id, outcome, deliveries > 0 FROM ccr_prompts WHERE session_id = '{session}' ORDER BY 1"
    ));
    assert_eq!(
        rows,
        ["barrier|allowed|t", "before|allowed|t", "during|allowed|t"],
        "all recorded and delivered"
    );
}

/// An owner paused past its lease, whose session another instance took over and connected,
/// connects nothing for the session when it wakes: its lease has lapsed (and is lost, as its
/// lease loop learns a moment later), so its session, whose socket the simulator closed for
/// the new owner's, waits for a renewal instead of reconnecting, and the new owner's
/// connection is never displaced (before, it reconnected after `transient_delay` when its
/// loop was slower than that, and dropped that connection when it learned of the loss,
/// leaving the session with none for a moment).
#[actix_rt::test]
async fn a_paused_owner_woken_after_a_takeover_never_displaces_the_new_owner_s_connection() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    // One session: the balance never moves it back to the woken instance.
    let sessions = ids(1);
    let session = sessions[0].clone();
    let c = Cluster::start_on(Pg::Shared(pg), 2, &sessions, "").await;
    let owners = c.until("owned", |o| o.len() == 1).await;
    all_connected(&c.sim, &sessions).await;
    let owner: usize = owners[&session]["inst-".len()..].parse().expect("inst-N");
    let new_owner = format!("inst-{}", 1 - owner);
    let first = c.sim.connections(&session);
    let paused = c.instances[owner].as_ref().expect("owner");
    paused.signal(libc::SIGSTOP);
    c.until("taken over", |o| o.get(&session) == Some(&new_owner))
        .await;
    // The new owner's connection replaced the paused owner's (closed with 1000).
    let deadline = Instant::now() + SETTLE;
    let mut events = c.sim.subscribe();
    while c.sim.connections(&session) == first || !c.sim.is_connected(&session) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{new_owner} never connected {session}");
        let _ = tokio::time::timeout(left, events.recv()).await;
    }
    let (connections, attempts) = (c.sim.connections(&session), c.sim.attempts(&session));
    paused.signal(libc::SIGCONT);
    // The woken instance let the session go (its session actor stopped: the session is
    // listed there with its new owner, in the state last heard from it or, none heard, as
    // `disconnected`; while it ran there it would show its own `reconnecting`).
    let http = support::http();
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = listed_session(&http, &c.api(owner), &session).await;
        let gone = s["owner"] == new_owner.as_str() && s["state"] != "reconnecting";
        if gone && paused.stderr_now().contains("lease lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "inst-{owner} never let {session} go: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (c.sim.attempts(&session), c.sim.connections(&session)),
        (attempts, connections),
        "the woken instance tried no connection, and the new owner's was never replaced"
    );
    assert!(c.sim.is_connected(&session));
    assert!(c
        .sim
        .push(&session, json!({"type": "assistant", "marker": "still"})));
}

/// Instance `i`'s `ccr_supervisor_cluster_leases_lapsed`.
async fn lapsed(http: &awc::Client, c: &Cluster, i: usize) -> i64 {
    let mut resp = http
        .get(format!("{}/metrics", c.api(i)))
        .send()
        .await
        .expect("GET /metrics");
    let body = resp.body().await.expect("body");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("ccr_supervisor_cluster_leases_lapsed "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the lapsed-leases gauge")
}

/// Every instance's event stream carries the permission events of every session: a prompt
/// recorded by its owner, and its answer, show up on the other instance's stream; the
/// session's transcript, asked of the other instance, is its owner's.
#[actix_rt::test]
async fn a_non_owner_s_event_stream_carries_the_owner_s_permission_events() {
    let Some((c, _, owners)) = settled(2, 4).await else {
        return;
    };
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let session = owned_by(&owners, "inst-0");
    let mut sse = support::open_sse(&http, &c.api(1)).await;
    let mut seen = vec![];
    ask(&c.sim, &session, "watched").await;
    sse.wait_for(&mut seen, |e| support::is_requested(e, "watched"))
        .await;
    answer_via(&c, 0, &mut sim_events, (&session, "watched")).await;
    let answered = sse
        .wait_for(&mut seen, |e| {
            e.event == "permission_answered" && e.data["request_id"] == "watched"
        })
        .await;
    assert_eq!(
        answered.data["session_id"],
        session.as_str(),
        "{:?}",
        answered.data
    );
    assert_eq!(answered.data["behavior"], "allow", "{:?}", answered.data);
}

/// The session `id` as `api` lists it (`GET /v1/sessions`).
async fn listed_session(http: &awc::Client, api: &str, id: &str) -> Value {
    let (status, body) = support::get(http, &format!("{api}/v1/sessions")).await;
    assert_eq!(status, 200, "{body}");
    let all = body["sessions"].as_array().expect("sessions");
    all.iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} listed by {api}: {body}"))
}

/// Poll `api`'s `GET /v1/sessions` until session `id` is in `state`, owned by `owner`.
async fn shown_as(http: &awc::Client, api: &str, id: &str, state: &str, owner: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = listed_session(http, api, id).await;
        if s["state"] == state && s["owner"] == owner {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{api} never showed {id} {state} on {owner}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every instance's event stream carries the state changes of every session, and
/// `GET /v1/sessions` on an instance that does not run a session shows the state its owner
/// announced (not `disconnected`).
#[actix_rt::test]
async fn a_non_owner_shows_the_session_states_of_the_owner() {
    let Some((c, _, owners)) = settled(2, 4).await else {
        return;
    };
    let http = support::http();
    let session = owned_by(&owners, "inst-0");
    shown_as(&http, &c.api(1), &session, "connected", "inst-0").await;
    let mut sse = support::open_sse(&http, &c.api(1)).await;
    let mut seen = vec![];
    // Published on inst-1's stream when heard, at start or when inst-1 asked for every
    // state (its history has it either way).
    sse.wait_for(&mut seen, |e| support::is_state(e, &session, "connected"))
        .await;
    assert!(c.sim.drop_connection(&session));
    sse.wait_for(&mut seen, |e| {
        support::is_state(e, &session, "reconnecting")
    })
    .await;
    sse.wait_for(&mut seen, |e| support::is_state(e, &session, "connected"))
        .await;
    shown_as(&http, &c.api(1), &session, "connected", "inst-0").await;
    // The owner's own view is its own, and the sessions inst-1 runs are inst-1's.
    let mine = owned_by(&owners, "inst-1");
    assert_eq!(
        listed_session(&http, &c.api(1), &mine).await["owner"],
        "inst-1"
    );
}

/// An HTTP client for streams that outlive [`support::WAIT`], with the admin token.
fn stream_client() -> awc::Client {
    awc::Client::builder()
        .disable_timeout()
        .add_default_header(("authorization", format!("Bearer {}", support::ADMIN_TOKEN)))
        .finish()
}

/// One session's stream (`GET /v1/events?session_id=`) asked of an instance that does not
/// run the session is its owner's, relayed: its SDK messages arrive live, with the owner's
/// sequence numbers. When the owner stops holding the session (here: paused past its
/// lease, the other instance takes the session over, the owner wakes and lets it go), the
/// owner's streams of the session end, the relayed one too; asked again, the stream is the
/// new owner's.
#[actix_rt::test]
async fn a_session_s_stream_asked_of_a_non_owner_is_relayed_from_its_owner() {
    let Some((c, _, owners)) = settled(2, 4).await else {
        return;
    };
    let http = stream_client();
    let session = owned_by(&owners, "inst-0");
    let query = format!("session_id={session}");
    let mut relayed = support::open_sse_with(&http, &c.api(1), &query).await;
    let mut direct = support::open_sse_with(&http, &c.api(0), &query).await;
    let mut seen = vec![];
    let mut at_owner = vec![];
    assert!(c
        .sim
        .push(&session, json!({"type": "assistant", "marker": "relayed"})));
    let is_marked = |e: &support::SseEvent, marker: &str| {
        e.event == "sdk_message" && e.data["message"]["marker"] == marker
    };
    let got = relayed
        .wait_for(&mut seen, |e| is_marked(e, "relayed"))
        .await;
    let want = direct
        .wait_for(&mut at_owner, |e| is_marked(e, "relayed"))
        .await;
    assert_eq!(got.data["session_id"], session.as_str());
    assert!(got.id.is_some());
    assert_eq!(got.id, want.id, "the owner's seq");
    let owner = c.instances[0].as_ref().expect("inst-0");
    owner.signal(libc::SIGSTOP);
    c.until("inst-1 took it over", |o| {
        o.get(&session).is_some_and(|o| o == "inst-1")
    })
    .await;
    owner.signal(libc::SIGCONT);
    for (name, stream) in [("relayed", &mut relayed), ("direct", &mut direct)] {
        loop {
            match stream.next(support::WAIT).await {
                support::SseNext::Event(_) => {} // what inst-0 published before it woke up
                support::SseNext::End => break,
                other => panic!("the {name} stream did not end with the lease: {other:?}"),
            }
        }
    }
    // Asked again: the new owner's (or, should the balance have moved it back already,
    // inst-0's again; a stream that ends meanwhile is asked once more, and so is one whose
    // session was not connected when the message was pushed: the balance hands a session
    // over by closing it, and its next owner connects it a round later).
    for attempt in 0.. {
        assert!(attempt < 5, "no stream of {session} carried its messages");
        all_connected(&c.sim, std::slice::from_ref(&session)).await;
        let mut again = support::open_sse_with(&http, &c.api(1), &query).await;
        let marker = format!("new-owner-{attempt}");
        if !c
            .sim
            .push(&session, json!({"type": "assistant", "marker": marker}))
        {
            continue;
        }
        let found = loop {
            match again.next(support::WAIT).await {
                support::SseNext::Event(e) if is_marked(&e, &marker) => break true,
                support::SseNext::Event(_) => {}
                support::SseNext::End => break false,
                other => panic!("{other:?}"),
            }
        };
        if found {
            break;
        }
    }
}

/// The `request_id`s of the webhook notifications a local receiver got (127.0.0.1, port 0).
struct Hooks {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    _server: actix_web::dev::ServerHandle,
}

impl Hooks {
    fn start() -> Hooks {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = web::Data::new(got.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(sink.clone()).default_service(web::to(
                |body: web::Bytes,
                 sink: web::Data<std::sync::Arc<std::sync::Mutex<Vec<Value>>>>| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().expect("hooks").push(v);
                    HttpResponse::Ok().finish()
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("receiver binds");
        let url = format!("http://{}/hook", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Hooks {
            url,
            got,
            _server: handle,
        }
    }

    /// How many notifications named `request_id`.
    fn count(&self, request_id: &str) -> usize {
        let got = self.got.lock().expect("hooks");
        got.iter().filter(|v| v["request_id"] == request_id).count()
    }

    /// Wait until a notification for `request_id` came.
    async fn until(&self, request_id: &str) {
        let deadline = Instant::now() + SETTLE;
        while self.count(request_id) == 0 {
            assert!(
                Instant::now() < deadline,
                "no notification for {request_id}: {:?}",
                self.got.lock().expect("hooks")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A prompt is notified once per cluster: by its owner only (the other instances publish
/// it on their streams, but do not notify), and not again by the instance that takes the
/// session over after a `kill -9` and restores the prompt.
#[actix_rt::test]
async fn a_prompt_notifies_once_per_cluster_even_across_a_takeover() {
    let hooks = Hooks::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = support::write_file(dir.path(), "hook-secret", "whsec-test-1\n");
    let extra = format!(
        "\n[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\nevents = [\"permission_requested\"]\n",
        hooks.url,
        secret.display()
    );
    let sessions = ids(4);
    let Some(mut c) = Cluster::start(2, &sessions, &extra).await else {
        return;
    };
    let owners = c
        .until("all owned by 2", |o| o.len() == 4 && load(o).len() == 2)
        .await;
    all_connected(&c.sim, &sessions).await;
    let http = support::http();
    let session = owned_by(&owners, "inst-0");
    let other = owned_by(&owners, "inst-1");
    assert!(c
        .sim
        .prompt(&session, "once", "Bash", json!({"command": "make"})));
    hooks.until("once").await;
    listed(&http, &c.api(1), "once").await;
    // The owner dies; the survivor takes the session over and restores the prompt.
    let mut first = c.instances[0].take().expect("inst-0");
    first.signal(libc::SIGKILL);
    first.wait_exit(support::WAIT).await;
    c.until("inst-1 took everything", |o| {
        o.len() == 4 && o.values().all(|owner| owner == "inst-1")
    })
    .await;
    all_connected(&c.sim, &sessions).await;
    assert_eq!(listed(&http, &c.api(1), "once").await, json!("inst-1"));
    // Barriers: a prompt on the restored session and one on a session inst-1 always had,
    // each notified after whatever a restore would have sent.
    for (s, rid) in [(&session, "after"), (&other, "other")] {
        assert!(c.sim.prompt(s, rid, "Bash", json!({})));
        hooks.until(rid).await;
    }
    for rid in ["once", "after", "other"] {
        assert_eq!(
            hooks.count(rid),
            1,
            "{rid}: {:?}",
            hooks.got.lock().unwrap()
        );
    }
}

#[actix_rt::test]
async fn a_prompt_of_a_session_another_instance_alone_runs_is_answered_on_any_instance() {
    // Configs that differ on purpose: `only-0` is in inst-0's config alone, so inst-1 does
    // not run it, yet lists its prompt (cluster-wide) and must answer it, not 404.
    let sessions = vec!["only-0".to_owned()];
    let Some(mut c) = Cluster::start(1, &sessions, "").await else {
        return;
    };
    let own = support::config_toml(&c.sim.base_url(), &[], &c._dir.path().join("unused.db"), "");
    let own = support::write_file(c._dir.path(), "inst-1.toml", &own);
    c.own_cfg = vec![None, Some(own)];
    let second = c.spawn(1).await;
    c.instances.push(Some(second));
    c.until("only-0 owned by inst-0", |o| {
        o.get("only-0").map(String::as_str) == Some("inst-0")
    })
    .await;
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    ask(&c.sim, "only-0", "elsewhere").await;
    listed(&http, &c.api(1), "elsewhere").await;
    let url = format!("{}/v1/sessions/only-0/permissions/elsewhere", c.api(1));
    let (status, body) = support::post(&http, &url, json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivery"], "queued", "{body}");
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "elsewhere"),
    )
    .await;
    assert_eq!(support::answers(&c.sim, "only-0", "elsewhere").len(), 1);
    // A session no instance knows is still unknown there.
    let url = format!("{}/v1/sessions/nobody/permissions/r1", c.api(1));
    let (status, body) = support::post(&http, &url, json!({"behavior": "allow"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_session")),
        "{body}"
    );
}
