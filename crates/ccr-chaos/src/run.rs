//! One chaos run: start the peer and the supervisor (or a cluster of them on a
//! throwaway PostgreSQL), inject faults, answer, `kill -9` and restart, drain,
//! read the ledger, judge.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::check::{check, Verdict};
use super::cluster::{self, Database};
use super::keeper::{keep, KeeperControl, KeeperSetup, KeeperStatus};
use super::operator::{self, Current, Desk, Target};
use super::peer::{FaultLog, Peer, PeerRates};
use super::process::{self, Launch, SupervisorProc, OPERATORS, SESSION_TOKEN, VIEWER};
use super::records::Records;
use super::report::{self, Figures};
use ccr_sim::{Script, SimBuilder, SimEvent, WireRecord};

/// Longest wait for a supervisor's API to come up.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Undrained wire records the simulator may hold (drained every [`DRAIN_EVERY`]).
const WIRE_CAPACITY: usize = 1 << 21;
/// How often the wire log is drained.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// The peer's step.
const TICK: Duration = Duration::from_millis(50);
/// After the drain, how long late frames (duplicates) are still watched for.
const SETTLE: Duration = Duration::from_secs(2);

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// The `ccr-supervisor` binary to run and kill.
    pub exe: PathBuf,
    /// Number of sessions.
    pub sessions: usize,
    /// Length of the chaos phase (faults, prompts, kills); the drain follows.
    pub duration: Duration,
    /// The one seed all randomness derives from.
    pub seed: u64,
    /// What each session does how often.
    pub rates: PeerRates,
    /// Time between two `kill -9`s, drawn uniformly from this range.
    pub kill_every: (Duration, Duration),
    /// Chance that a kill is preceded by pausing the readers of a third of the sessions.
    pub pause_before_kill: f64,
    /// Chance, per session, that while the supervisor is down it withdraws one
    /// outstanding prompt without telling anyone (another client answered it).
    pub withdraw_on_kill: f64,
    /// Chance an operator answers a listed prompt on each poll (chaos phase).
    pub answer_chance: f64,
    /// Chance an answer is raced by the other operator.
    pub race_chance: f64,
    /// Longest drain (after it, unsettled prompts count as lost).
    pub drain_timeout: Duration,
    /// How often the supervisor's RSS is sampled.
    pub rss_every: Duration,
    /// Print a progress line this often (`None`: quiet).
    pub progress: Option<Duration>,
    /// Supervisor processes: 1 runs one on a SQLite ledger; more run a cluster on a
    /// throwaway PostgreSQL, sharing the sessions by leases.
    pub instances: usize,
    /// How a cluster's instances are faulted (unused with one instance).
    pub cluster: ClusterFaults,
    /// The PostgreSQL server a cluster run uses (a fresh database on it); `None` starts
    /// one for the run.
    pub postgres: Option<&'static ccr_pgtest::PgServer>,
}

/// How the instances of a cluster are faulted. At each fault time (drawn from
/// `kill_every`) one running instance, never the last, is frozen (`stop_chance`),
/// stopped gracefully (`term_chance`) or else killed with `kill -9`.
#[derive(Clone, Debug)]
pub struct ClusterFaults {
    /// `[cluster] lease_period` of every instance.
    pub lease_period: Duration,
    /// A killed or stopped instance restarts (same id, same port) after a pause drawn from this range.
    pub restart_after: (Duration, Duration),
    /// Chance a fault is a `SIGSTOP` for 1.5 to 3 lease periods, then `SIGCONT`.
    pub stop_chance: f64,
    /// Chance a fault is a `SIGTERM` (a graceful stop).
    pub term_chance: f64,
}

impl Default for ClusterFaults {
    fn default() -> Self {
        ClusterFaults {
            lease_period: Duration::from_secs(1),
            restart_after: (Duration::from_millis(500), Duration::from_secs(5)),
            stop_chance: 0.25,
            term_chance: 0.15,
        }
    }
}

impl ChaosOptions {
    /// The short run of the test suite: 40 sessions, 50 s, a kill every 8-14 s.
    pub fn short(exe: PathBuf, seed: u64) -> Self {
        ChaosOptions {
            exe,
            sessions: 40,
            duration: Duration::from_secs(50),
            seed,
            rates: PeerRates {
                prompt: 0.25,
                cancel: 0.1,
                withdraw_unseen: 4.0,
                fault: 1.0 / 12.0,
                pause: 1.0 / 15.0,
                garbage: 0.02,
                max_outstanding: 6,
            },
            kill_every: (Duration::from_secs(8), Duration::from_secs(14)),
            pause_before_kill: 0.6,
            withdraw_on_kill: 0.2,
            answer_chance: 0.2,
            race_chance: 0.12,
            drain_timeout: Duration::from_secs(30),
            rss_every: Duration::from_secs(1),
            progress: None,
            instances: 1,
            cluster: ClusterFaults::default(),
            postgres: None,
        }
    }

    /// The test suite's cluster run: 3 instances on PostgreSQL, 30 sessions, 40 s, a
    /// fault every 4-7 s.
    pub fn short_cluster(exe: PathBuf, seed: u64) -> Self {
        ChaosOptions {
            sessions: 30,
            duration: Duration::from_secs(40),
            ..ChaosOptions::short(exe, seed).in_cluster(3)
        }
    }

    /// The same run on `instances` cluster instances (with more than one), faulted twice as
    /// often as a single supervisor is killed: each fault hits only one of them.
    pub fn in_cluster(mut self, instances: usize) -> Self {
        if instances > 1 && self.instances <= 1 {
            self.kill_every = (self.kill_every.0 / 2, self.kill_every.1 / 2);
        }
        self.instances = instances.max(1);
        self
    }

    /// A long run: `sessions` sessions for `duration`, a kill every 20-60 s.
    pub fn long(exe: PathBuf, sessions: usize, duration: Duration, seed: u64) -> Self {
        ChaosOptions {
            sessions,
            duration,
            rates: PeerRates {
                prompt: 0.1,
                cancel: 0.03,
                withdraw_unseen: 2.0,
                fault: 1.0 / 45.0,
                pause: 1.0 / 40.0,
                garbage: 0.02,
                max_outstanding: 6,
            },
            kill_every: (Duration::from_secs(20), Duration::from_secs(60)),
            drain_timeout: Duration::from_secs(120),
            rss_every: Duration::from_secs(5),
            progress: Some(Duration::from_secs(30)),
            ..ChaosOptions::short(exe, seed)
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct ChaosOutcome {
    /// The seed it ran with.
    pub seed: u64,
    /// What it recorded.
    pub records: Records,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Restarts, RSS, timings.
    pub figures: Figures,
}

impl ChaosOutcome {
    /// No invariant broken.
    pub fn passed(&self) -> bool {
        self.verdict.violations.is_empty()
    }

    /// The human report (figures, violations, timelines).
    pub fn report(&self) -> String {
        report::render(self.seed, &self.records, &self.verdict, &self.figures)
    }
}

/// An independent generator for one decision point, named by `parts` (e.g.
/// `peer`, tick, session): its draws do not depend on how many values any
/// other decision drew, so a timing-dependent branch elsewhere cannot shift
/// them, and the same seed makes the same decisions at the same points.
pub fn rng_for(seed: u64, parts: &[&[u8]]) -> StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    StdRng::seed_from_u64(seed ^ h)
}

/// The seed to use: `CHAOS_SEED` if set (an error if unparsable), else a fresh random one.
pub fn seed_from_env() -> anyhow::Result<u64> {
    match std::env::var("CHAOS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("CHAOS_SEED={s:?} is not a number")),
        Err(_) => Ok(rand::thread_rng().gen()),
    }
}

/// Wait until every session has had a live connection.
async fn all_connected(
    events: &mut tokio::sync::broadcast::Receiver<SimEvent>,
    ids: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut left: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let wait = async {
        while !left.is_empty() {
            match events.recv().await {
                Ok(SimEvent::Connected { session, .. }) => {
                    left.remove(session.as_str());
                }
                Ok(_) => {}
                Err(e) => bail!("simulator events: {e}"),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => bail!("not every session connected within {timeout:?}"),
    }
}

/// Wait (at most `limit`) until `done` holds, checking every 50 ms.
async fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

fn progress(start: Instant, wire: &[WireRecord], status: &KeeperStatus, outstanding: usize) {
    let (mut prompts, mut answers) = (0, 0);
    for r in wire {
        match r.event {
            ccr_sim::WireEvent::Prompted { .. } => prompts += 1,
            ccr_sim::WireEvent::Answered { .. } => answers += 1,
            _ => {}
        }
    }
    eprintln!(
        "chaos: t={:.0}s prompts {prompts} answer frames {answers} outstanding {outstanding} \
         restarts {} supervisor RSS {:.1} MiB (largest)",
        start.elapsed().as_secs_f64(),
        status.restarts.get(),
        status.rss_kib.get() as f64 / 1024.0
    );
}

/// The supervisors of a run: how to start each, their instance ids, and the
/// cluster's database (`None` for a single supervisor on SQLite).
struct Fleet {
    launches: Vec<Launch>,
    instances: Vec<String>,
    db: Option<Rc<Database>>,
}

impl Fleet {
    async fn new(opts: &ChaosOptions, config: PathBuf) -> anyhow::Result<Fleet> {
        if opts.instances <= 1 {
            return Ok(Fleet {
                launches: vec![Launch {
                    exe: opts.exe.clone(),
                    config,
                    env: Vec::new(),
                }],
                instances: vec![String::new()],
                db: None,
            });
        }
        let db = Database::open(opts.postgres).await?;
        let ports = cluster::api_ports(opts.instances)?;
        let launches = ports
            .iter()
            .enumerate()
            .map(|(i, port)| Launch {
                exe: opts.exe.clone(),
                config: config.clone(),
                env: cluster::instance_env(i, *port, &db.url, opts.cluster.lease_period),
            })
            .collect();
        Ok(Fleet {
            launches,
            instances: (0..opts.instances).map(cluster::instance_id).collect(),
            db: Some(Rc::new(db)),
        })
    }

    /// Start every instance at once; all of them, or the first error.
    async fn start(&self) -> anyhow::Result<Vec<SupervisorProc>> {
        let starting: Vec<_> = self
            .launches
            .iter()
            .map(|l| {
                let l = l.clone();
                actix_rt::spawn(async move { l.spawn(START_TIMEOUT).await })
            })
            .collect();
        let mut procs = Vec::with_capacity(starting.len());
        for (i, s) in starting.into_iter().enumerate() {
            let proc = s.await.context("starting a supervisor")?;
            procs.push(proc.with_context(|| format!("starting {}", self.instances[i]))?);
        }
        Ok(procs)
    }
}

/// SIGTERM every process at once, then wait for each (SIGKILL after `grace`).
async fn stop_all(procs: Vec<SupervisorProc>, grace: Duration) {
    for p in &procs {
        p.signal(libc::SIGCONT);
        p.signal(libc::SIGTERM);
    }
    for p in procs {
        p.stop(grace).await;
    }
}

/// Run the chaos test once; must be called inside a running actix System.
pub async fn run(opts: ChaosOptions) -> anyhow::Result<ChaosOutcome> {
    if opts.sessions == 0 {
        bail!("at least one session is needed");
    }
    let start = Instant::now();
    let ids: Vec<String> = (1..=opts.sessions).map(process::session_id).collect();
    let mut builder = SimBuilder::new()
        .wire_log(WIRE_CAPACITY)
        .keep_received(false)
        .idle_timeout(Duration::from_secs(600));
    for id in &ids {
        builder = builder.session(id, SESSION_TOKEN, Script::empty());
    }
    let sim = builder
        .start()
        .await
        .context("cannot start the simulated CCR peer")?;
    let dir = process::run_dir()?;
    let config = process::write_config(dir.path(), &sim.base_url(), opts.sessions)?;
    let fleet = Fleet::new(&opts, config).await?;

    let wire: Rc<RefCell<Vec<WireRecord>>> = Rc::default();
    let overflowed = Rc::new(Cell::new(0));
    let draining = Rc::new(Cell::new(true));
    let drainer = actix_rt::spawn({
        let (sim, wire, overflowed, draining) = (
            sim.clone(),
            wire.clone(),
            overflowed.clone(),
            draining.clone(),
        );
        async move {
            while draining.get() {
                tokio::time::sleep(DRAIN_EVERY).await;
                let (records, over) = sim.take_wire();
                wire.borrow_mut().extend(records);
                overflowed.set(over);
            }
        }
    });

    let mut events = sim.subscribe();
    let procs = fleet.start().await?;
    if let Err(e) = all_connected(&mut events, &ids, START_TIMEOUT).await {
        let tails: Vec<String> = procs
            .iter()
            .zip(&fleet.instances)
            .map(|(p, i)| format!("--- {i} (pid {}):\n{}", p.pid, p.stderr_tail()))
            .collect();
        bail!("{e}; supervisor stderr:\n{}", tails.join("\n"));
    }
    drop(events);
    let current: Current = Rc::new(RefCell::new(
        procs
            .iter()
            .zip(&fleet.instances)
            .map(|(p, instance)| {
                Some(Target {
                    api: p.api.clone(),
                    pid: p.pid,
                    instance: instance.clone(),
                })
            })
            .collect(),
    ));
    let faults: FaultLog = Rc::default();
    let ctl = KeeperControl::default();
    let setup = KeeperSetup {
        launches: fleet.launches.clone(),
        instances: fleet.instances.clone(),
        db: fleet.db.clone(),
        current: current.clone(),
        opts: opts.clone(),
        sim: sim.clone(),
        ids: ids.clone(),
        faults: faults.clone(),
        start,
    };
    let keeper = actix_rt::spawn(keep(procs, setup, ctl.clone()));

    let desk = Desk::new(current.clone(), opts.answer_chance, opts.race_chance);
    let clients: Vec<(String, Rc<awc::Client>)> = OPERATORS
        .iter()
        .map(|(name, token)| (name.to_string(), Rc::new(operator::client(token))))
        .collect();
    let operators = [(0, 1), (1, 0)].map(|(me, other)| {
        actix_rt::spawn(operator::operate(
            desk.clone(),
            clients[me].clone(),
            clients[other].clone(),
            opts.seed,
        ))
    });

    let mut peer = Peer::new(
        sim.clone(),
        ids.clone(),
        opts.seed,
        opts.rates.clone(),
        faults.clone(),
    );
    let chaos_start = Instant::now();
    let ticks = opts.duration.as_millis() / TICK.as_millis();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_progress = opts.progress.map(|p| Instant::now() + p);
    for _ in 0..ticks {
        interval.tick().await;
        peer.tick(TICK);
        if let (Some(at), Some(every)) = (next_progress, opts.progress) {
            if Instant::now() >= at {
                progress(start, &wire.borrow(), &ctl.status, peer.outstanding());
                next_progress = Some(at + every);
            }
        }
    }
    let chaos = chaos_start.elapsed();

    // Drain: no more faults or kills; operators answer everything listed.
    ctl.calm.set(true);
    peer.calm();
    desk.answer_chance.set(1.0);
    let drain_start = Instant::now();
    let drained = poll_until(opts.drain_timeout, || peer.outstanding() == 0).await;
    let drain = drain_start.elapsed();
    desk.stop.set(true);
    for op in operators {
        let _ = op.await;
    }
    poll_until(Duration::from_secs(10), || desk.in_flight.get() == 0).await;
    // Watch a little longer for late frames (a duplicate arrives after the fact).
    tokio::time::sleep(SETTLE).await;
    poll_until(START_TIMEOUT, || {
        current.borrow().iter().all(Option::is_some)
    })
    .await;
    let (ledger, mut kept) = match &fleet.db {
        None => {
            let api = current.borrow()[0].clone().map(|t| t.api);
            let ledger = match api {
                Some(api) => operator::fetch_ledger(&operator::client(VIEWER.1), &api).await,
                None => Err(anyhow::anyhow!(
                    "no supervisor running to read the ledger from"
                )),
            };
            ctl.stop.set(true);
            let kept = keeper.await.context("process keeper")??;
            let stderr: Vec<String> = kept.procs.iter().map(|p| p.stderr_tail()).collect();
            let ledger = ledger
                .map_err(|e| anyhow::anyhow!("{e:#}; supervisor stderr:\n{}", stderr.join("\n")));
            (ledger, kept)
        }
        Some(db) => {
            // Every instance stopped first: the ledger is read once nothing writes.
            ctl.stop.set(true);
            let mut kept = keeper.await.context("process keeper")??;
            stop_all(std::mem::take(&mut kept.procs), Duration::from_secs(10)).await;
            let ledger = db
                .ledger()
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}; PostgreSQL log:\n{}", db.server_log()));
            (ledger, kept)
        }
    };
    stop_all(std::mem::take(&mut kept.procs), Duration::from_secs(10)).await;
    let ledger = ledger?;
    sim.stop().await;
    draining.set(false);
    let _ = drainer.await;
    let (rest, over) = sim.take_wire();
    let mut wire = wire.take();
    wire.extend(rest);
    let records = Records {
        start,
        wire,
        wire_overflowed: over.max(overflowed.get()),
        attempts: desk.attempts.take(),
        rule_prompts: peer.take_rule_prompts(),
        kills: kept.kills,
        faults: faults.take(),
        ledger,
        crashes: kept.crashes,
    };
    let verdict = check(&records);
    drop(dir);
    Ok(ChaosOutcome {
        seed: opts.seed,
        records,
        verdict,
        figures: Figures {
            sessions: opts.sessions,
            instances: opts.instances,
            lease_period: (opts.instances > 1).then_some(opts.cluster.lease_period),
            takeovers: kept.takeovers,
            chaos,
            drain,
            drained,
            restarts: kept.restarts,
            rss: kept.rss,
        },
    })
}
