//! The process keeper: runs the supervisor (or every instance of a cluster),
//! `kill -9`s one now and then, restarts it (also after an exit of its own,
//! recorded as a crash), and samples RSS.
//!
//! A single supervisor is restarted at once on its ledger. In a cluster the
//! keeper picks a random running instance (never the last one running) and
//! either `kill -9`s it, freezes it past its lease period (`SIGSTOP`, then
//! `SIGCONT`: it must find its leases gone and write nothing more), or stops it
//! gracefully (`SIGTERM`); a killed or stopped instance comes back under the
//! same id and port after a random pause. It also times each takeover: from
//! the signal until every session is under a live lease of another instance.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::cluster::Database;
use super::operator::{Current, Target};
use super::peer::FaultLog;
use super::process::{Launch, SupervisorProc};
use super::records::{Fault, Kill, Signal};
use super::report::{RssSample, Takeover};
use super::run::{rng_for, ChaosOptions, START_TIMEOUT};
use ccr_sim::SimHandle;

/// Longest a graceful stop may take before the instance is killed (and that is reported).
const TERM_GRACE: Duration = Duration::from_secs(15);
/// Longest a takeover is timed.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);

/// What the process keeper hands back when told to stop.
pub(super) struct Kept {
    pub(super) procs: Vec<SupervisorProc>,
    pub(super) kills: Vec<Kill>,
    pub(super) crashes: Vec<String>,
    pub(super) restarts: Vec<Duration>,
    pub(super) rss: Vec<RssSample>,
    pub(super) takeovers: Vec<Takeover>,
}

/// What the keeper shows while it runs (for progress lines).
#[derive(Default)]
pub(super) struct KeeperStatus {
    pub(super) restarts: Cell<usize>,
    /// The largest RSS among the running processes.
    pub(super) rss_kib: Cell<u64>,
}

/// Flags the run sets to steer the keeper.
#[derive(Clone, Default)]
pub(super) struct KeeperControl {
    /// No more kills (the drain): frozen instances are continued, stopped ones restarted.
    pub(super) calm: Rc<Cell<bool>>,
    /// Return the processes and the figures.
    pub(super) stop: Rc<Cell<bool>>,
    pub(super) status: Rc<KeeperStatus>,
}

/// Everything the keeper needs besides the processes.
pub(super) struct KeeperSetup {
    /// How to start each instance (one for a single supervisor).
    pub(super) launches: Vec<Launch>,
    /// Each instance's id (empty for a single supervisor).
    pub(super) instances: Vec<String>,
    /// The cluster's database (takeovers are timed on its lease table).
    pub(super) db: Option<Rc<Database>>,
    pub(super) current: Current,
    pub(super) opts: ChaosOptions,
    pub(super) sim: SimHandle,
    pub(super) ids: Vec<String>,
    pub(super) faults: FaultLog,
    pub(super) start: Instant,
}

/// One instance: its process when it has one, and what the keeper did to it.
struct Slot {
    proc: Option<SupervisorProc>,
    /// `SIGCONT` due then.
    frozen_until: Option<Instant>,
    /// Down; restart due then.
    restart_at: Option<Instant>,
    /// Set when it runs again (ends the timing of its takeover).
    back: Rc<Cell<bool>>,
}

impl Slot {
    fn running(&self) -> bool {
        self.proc.is_some() && self.frozen_until.is_none()
    }
}

/// Everything recorded while keeping.
#[derive(Default)]
struct Log {
    kills: Vec<Kill>,
    crashes: Vec<String>,
    restarts: Vec<Duration>,
    rss: Vec<RssSample>,
    takeovers: Rc<RefCell<Vec<Takeover>>>,
}

/// Run the supervisors: fault one now and then (until calm), restart them, also after
/// an exit of their own (recorded as a crash), and sample their RSS.
pub(super) async fn keep(
    procs: Vec<SupervisorProc>,
    k: KeeperSetup,
    ctl: KeeperControl,
) -> anyhow::Result<Kept> {
    // Kill number n draws from its own generator (see `rng_for`).
    let killer = |n: usize| rng_for(k.opts.seed, &[b"killer", &n.to_le_bytes()]);
    let mut rng = killer(0);
    let (lo, hi) = k.opts.kill_every;
    let draw = move |rng: &mut StdRng| {
        let ms = rng.gen_range(lo.as_millis() as u64..=hi.as_millis().max(lo.as_millis()) as u64);
        Instant::now() + Duration::from_millis(ms)
    };
    let mut next_kill = draw(&mut rng);
    let mut next_rss = Instant::now();
    let mut slots: Vec<Slot> = procs
        .into_iter()
        .map(|p| Slot {
            proc: Some(p),
            frozen_until: None,
            restart_at: None,
            back: Rc::default(),
        })
        .collect();
    let mut log = Log::default();
    while !ctl.stop.get() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..slots.len() {
            restart_crashed(&k, &mut slots, i, &mut log).await?;
        }
        if Instant::now() >= next_rss {
            sample_rss(&k, &slots, &ctl, &mut log);
            next_rss += k.opts.rss_every;
        }
        for i in 0..slots.len() {
            wake_or_restart(&k, &ctl, &mut slots, i, &mut log).await?;
        }
        if ctl.calm.get() || Instant::now() < next_kill {
            continue;
        }
        if slots.len() == 1 {
            kill_single(&k, &ctl, &mut slots[0], &mut rng, &mut log).await?;
        } else {
            fault_instance(&k, &ctl, &mut slots, &mut rng, &mut log).await?;
        }
        ctl.status.restarts.set(log.restarts.len());
        rng = killer(log.kills.len());
        next_kill = draw(&mut rng);
    }
    let takeovers = log.takeovers.take();
    Ok(Kept {
        procs: slots.into_iter().filter_map(|s| s.proc).collect(),
        kills: log.kills,
        crashes: log.crashes,
        restarts: log.restarts,
        rss: log.rss,
        takeovers,
    })
}

/// Point the operators at slot `i`'s process (or at nothing).
fn publish(k: &KeeperSetup, slots: &[Slot], i: usize) {
    let target = slots[i].proc.as_ref().map(|p| Target {
        api: p.api.clone(),
        pid: p.pid,
        instance: k.instances[i].clone(),
    });
    k.current.borrow_mut()[i] = target;
}

/// Start slot `i`'s process; records how long it took to come up.
async fn start(k: &KeeperSetup, slots: &mut [Slot], i: usize, log: &mut Log) -> anyhow::Result<()> {
    let t = Instant::now();
    let proc = k.launches[i]
        .spawn(START_TIMEOUT)
        .await
        .with_context(|| format!("restarting {}", name(k, i)))?;
    log.restarts.push(t.elapsed());
    slots[i].proc = Some(proc);
    slots[i].restart_at = None;
    slots[i].back.set(true);
    publish(k, slots, i);
    Ok(())
}

fn name(k: &KeeperSetup, i: usize) -> String {
    match k.instances[i].as_str() {
        "" => "the supervisor".to_owned(),
        id => id.to_owned(),
    }
}

/// A process that exited without being told to is a crash: record it and start it again.
async fn restart_crashed(
    k: &KeeperSetup,
    slots: &mut [Slot],
    i: usize,
    log: &mut Log,
) -> anyhow::Result<()> {
    let Some(proc) = slots[i].proc.as_mut() else {
        return Ok(());
    };
    let Some(status) = proc.exited() else {
        return Ok(());
    };
    log.crashes.push(format!(
        "{} (pid {}) exited by itself ({status}); its last stderr lines:\n{}",
        name(k, i),
        proc.pid,
        proc.stderr_tail()
    ));
    slots[i].proc = None;
    slots[i].frozen_until = None;
    publish(k, slots, i);
    start(k, slots, i, log).await
}

fn sample_rss(k: &KeeperSetup, slots: &[Slot], ctl: &KeeperControl, log: &mut Log) {
    let mut top = 0;
    for (i, proc) in slots.iter().enumerate() {
        let Some(proc) = &proc.proc else { continue };
        if let Some(kib) = proc.rss_kib() {
            log.rss.push(RssSample {
                at: k.start.elapsed(),
                pid: proc.pid,
                instance: k.instances[i].clone(),
                kib,
            });
            top = top.max(kib);
        }
    }
    ctl.status.rss_kib.set(top);
}

/// `SIGCONT` a frozen instance, or restart a stopped one, when due (at once when calm).
async fn wake_or_restart(
    k: &KeeperSetup,
    ctl: &KeeperControl,
    slots: &mut [Slot],
    i: usize,
    log: &mut Log,
) -> anyhow::Result<()> {
    let due = |at: Option<Instant>| at.is_some_and(|t| ctl.calm.get() || Instant::now() >= t);
    if due(slots[i].frozen_until) {
        if let Some(proc) = &slots[i].proc {
            proc.signal(libc::SIGCONT);
        }
        slots[i].frozen_until = None;
        slots[i].back.set(true);
    }
    if due(slots[i].restart_at) {
        start(k, slots, i, log).await?;
    }
    Ok(())
}

/// The single supervisor: pause some readers first (often), `kill -9`, restart at once.
async fn kill_single(
    k: &KeeperSetup,
    ctl: &KeeperControl,
    slot: &mut Slot,
    rng: &mut StdRng,
    log: &mut Log,
) -> anyhow::Result<()> {
    if pause_readers(k, ctl, rng).await {
        return Ok(());
    }
    let Some(mut proc) = slot.proc.take() else {
        return Ok(());
    };
    k.current.borrow_mut()[0] = None;
    let at = Instant::now();
    proc.kill9();
    log.kills.push(Kill {
        at,
        pid: proc.pid,
        instance: String::new(),
        how: Signal::Kill9,
    });
    proc.wait()
        .await
        .context("waiting for the killed supervisor")?;
    withdraw_while_down(k, log.kills.len()).await;
    let proc = k.launches[0].spawn(START_TIMEOUT).await?;
    log.restarts.push(at.elapsed());
    k.current.borrow_mut()[0] = Some(Target {
        api: proc.api.clone(),
        pid: proc.pid,
        instance: String::new(),
    });
    slot.proc = Some(proc);
    Ok(())
}

/// With chance `pause_before_kill`, slow the readers of a third of the sessions and wait
/// a moment: answers written meanwhile are never read, and the sessions replay those
/// prompts to the next owner. True when the run turned calm meanwhile (do nothing more).
async fn pause_readers(k: &KeeperSetup, ctl: &KeeperControl, rng: &mut StdRng) -> bool {
    if !rng.gen_bool(k.opts.pause_before_kill.clamp(0.0, 1.0)) {
        return false;
    }
    for id in &k.ids {
        if rng.gen_bool(1.0 / 3.0) && k.sim.pause_reading(id, Duration::from_secs(4)) {
            k.faults.borrow_mut().push(Fault {
                at: Instant::now(),
                session: id.clone(),
                kind: "pause (4s, before a kill -9)".into(),
            });
        }
    }
    tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1000))).await;
    ctl.calm.get()
}

/// A cluster: `kill -9`, freeze or gracefully stop one running instance (never the last).
async fn fault_instance(
    k: &KeeperSetup,
    ctl: &KeeperControl,
    slots: &mut [Slot],
    rng: &mut StdRng,
    log: &mut Log,
) -> anyhow::Result<()> {
    let running: Vec<usize> = (0..slots.len()).filter(|i| slots[*i].running()).collect();
    if running.len() < 2 {
        return Ok(());
    }
    let i = *running.choose(rng).expect("two running");
    let c = &k.opts.cluster;
    let roll: f64 = rng.gen();
    let pause = rng.gen_range(c.restart_after.0..=c.restart_after.1.max(c.restart_after.0));
    let how = if roll < c.stop_chance {
        let lease = c.lease_period.as_secs_f64();
        Signal::Stop(Duration::from_secs_f64(
            rng.gen_range(lease * 1.5..=lease * 3.0),
        ))
    } else if roll < c.stop_chance + c.term_chance {
        Signal::Term
    } else {
        if pause_readers(k, ctl, rng).await {
            return Ok(());
        }
        Signal::Kill9
    };
    let slot = &mut slots[i];
    let Some(proc) = slot.proc.as_mut() else {
        return Ok(());
    };
    let at = Instant::now();
    let pid = proc.pid;
    slot.back = Rc::default();
    match how {
        Signal::Stop(d) => {
            // Still listed: operators who ask it wait, as they would for a frozen host.
            proc.signal(libc::SIGSTOP);
            slot.frozen_until = Some(at + d);
        }
        Signal::Term => {
            k.current.borrow_mut()[i] = None;
            match proc.terminate(TERM_GRACE).await {
                Some(status) if status.success() => {}
                outcome => log.crashes.push(format!(
                    "{} (pid {pid}) after SIGTERM: {}; its last stderr lines:\n{}",
                    name(k, i),
                    match outcome {
                        Some(status) => format!("exited with {status}"),
                        None => format!("still running after {TERM_GRACE:?}, killed"),
                    },
                    proc.stderr_tail()
                )),
            }
            slot.proc = None;
            slot.restart_at = Some(Instant::now() + pause);
        }
        Signal::Kill9 => {
            k.current.borrow_mut()[i] = None;
            proc.kill9();
            proc.wait()
                .await
                .context("waiting for the killed instance")?;
            slot.proc = None;
            slot.restart_at = Some(Instant::now() + pause);
        }
    }
    log.kills.push(Kill {
        at,
        pid,
        instance: k.instances[i].clone(),
        how,
    });
    if how == Signal::Kill9 {
        withdraw_while_down(k, log.kills.len()).await;
    }
    if let Some(db) = &k.db {
        actix_rt::spawn(time_takeover(
            db.clone(),
            k.instances[i].clone(),
            how,
            k.ids.len(),
            at,
            slots[i].back.clone(),
            log.takeovers.clone(),
        ));
    }
    Ok(())
}

/// Time from `at` until every session is under a live lease of an instance other than
/// `instance`; not timed (`None`) when `instance` runs again first, or after [`TAKEOVER_LIMIT`].
async fn time_takeover(
    db: Rc<Database>,
    instance: String,
    how: Signal,
    sessions: usize,
    at: Instant,
    back: Rc<Cell<bool>>,
    out: Rc<RefCell<Vec<Takeover>>>,
) {
    let took = loop {
        if back.get() || at.elapsed() > TAKEOVER_LIMIT {
            break None;
        }
        if let Ok(n) = db.leased_elsewhere(&instance).await {
            if n >= sessions {
                break Some(at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    out.borrow_mut().push(Takeover {
        instance,
        how,
        took,
        timed_out: took.is_none() && !back.get(),
    });
}

/// While a supervisor is down, some of its sessions settle a prompt elsewhere (another
/// client answered it): they just stop replaying it, which is all the next owner can
/// ever see of it. (Sessions with a live connection are left alone.)
async fn withdraw_while_down(k: &KeeperSetup, kill: usize) {
    // Let the simulator notice the dead connections (paused readers do not).
    tokio::time::sleep(Duration::from_millis(100)).await;
    for id in &k.ids {
        let mut rng = rng_for(
            k.opts.seed,
            &[b"withdraw", &kill.to_le_bytes(), id.as_bytes()],
        );
        if !rng.gen_bool(k.opts.withdraw_on_kill.clamp(0.0, 1.0)) {
            continue;
        }
        let outstanding = k.sim.outstanding(id);
        if let Some(victim) = outstanding.choose(&mut rng) {
            if k.sim.withdraw_unseen(id, victim) {
                k.faults.borrow_mut().push(Fault {
                    at: Instant::now(),
                    session: id.clone(),
                    kind: "withdrawal while the supervisor was down".into(),
                });
            }
        }
    }
}
