//! The process keeper: runs the supervisor, `kill -9`s it now and then,
//! restarts it (also after an exit of its own, recorded as a crash), and
//! samples its RSS.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::operator::Current;
use super::peer::FaultLog;
use super::process::SupervisorProc;
use super::records::{Fault, Kill};
use super::report::RssSample;
use super::run::{rng_for, ChaosOptions, START_TIMEOUT};
use ccr_sim::SimHandle;

/// What the process keeper hands back when told to stop.
pub(super) struct Kept {
    pub(super) proc: SupervisorProc,
    pub(super) kills: Vec<Kill>,
    pub(super) crashes: Vec<String>,
    pub(super) restarts: Vec<Duration>,
    pub(super) rss: Vec<RssSample>,
}

/// What the keeper shows while it runs (for progress lines).
#[derive(Default)]
pub(super) struct KeeperStatus {
    pub(super) restarts: Cell<usize>,
    pub(super) rss_kib: Cell<u64>,
}

/// Flags the run sets to steer the keeper.
#[derive(Clone, Default)]
pub(super) struct KeeperControl {
    /// No more kills (the drain).
    pub(super) calm: Rc<Cell<bool>>,
    /// Return the process and the figures.
    pub(super) stop: Rc<Cell<bool>>,
    pub(super) status: Rc<KeeperStatus>,
}

/// Everything the keeper needs besides the process.
pub(super) struct KeeperSetup {
    pub(super) exe: PathBuf,
    pub(super) config: PathBuf,
    pub(super) current: Current,
    pub(super) opts: ChaosOptions,
    pub(super) sim: SimHandle,
    pub(super) ids: Vec<String>,
    pub(super) faults: FaultLog,
    pub(super) start: Instant,
}

/// Run the supervisor: `kill -9` it now and then (until calm), restart it, also
/// after an exit of its own (recorded as a crash), and sample its RSS.
pub(super) async fn keep(
    mut proc: SupervisorProc,
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
    let (mut kills, mut crashes, mut restarts, mut rss) = (vec![], vec![], vec![], vec![]);
    while !ctl.stop.get() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(status) = proc.exited() {
            *k.current.borrow_mut() = None;
            crashes.push(format!(
                "pid {} exited by itself ({status}); its last stderr lines:\n{}",
                proc.pid,
                proc.stderr_tail()
            ));
            proc = SupervisorProc::spawn(&k.exe, &k.config, START_TIMEOUT).await?;
            *k.current.borrow_mut() = Some((proc.api.clone(), proc.pid));
            continue;
        }
        if Instant::now() >= next_rss {
            if let Some(kib) = proc.rss_kib() {
                rss.push(RssSample {
                    at: k.start.elapsed(),
                    pid: proc.pid,
                    kib,
                });
                ctl.status.rss_kib.set(kib);
            }
            next_rss += k.opts.rss_every;
        }
        if ctl.calm.get() || Instant::now() < next_kill {
            continue;
        }
        if rng.gen_bool(k.opts.pause_before_kill.clamp(0.0, 1.0)) {
            // Slow readers when the process dies: answers it wrote meanwhile are
            // never read, and the sessions replay those prompts to the next process.
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
            if ctl.calm.get() {
                continue;
            }
        }
        *k.current.borrow_mut() = None;
        let at = Instant::now();
        proc.kill9();
        kills.push(Kill { at, pid: proc.pid });
        proc.wait()
            .await
            .context("waiting for the killed supervisor")?;
        withdraw_while_down(&k, kills.len()).await;
        proc = SupervisorProc::spawn(&k.exe, &k.config, START_TIMEOUT).await?;
        restarts.push(at.elapsed());
        ctl.status.restarts.set(restarts.len());
        *k.current.borrow_mut() = Some((proc.api.clone(), proc.pid));
        rng = killer(kills.len());
        next_kill = draw(&mut rng);
    }
    Ok(Kept {
        proc,
        kills,
        crashes,
        restarts,
        rss,
    })
}

/// While the supervisor is down, some sessions settle a prompt elsewhere (another
/// client answered it): they just stop replaying it, which is all the next
/// process can ever see of it.
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
