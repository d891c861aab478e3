//! `failover`: `--instances` supervisors share the sessions by leases on one PostgreSQL,
//! with prompts flowing (answered by a policy rule, so no operator is in the loop); one
//! member is killed with SIGKILL. Measured: the time from the kill until every session it
//! owned is connected again (by the simulator's per-session connection counts), and the
//! prompts lost (sent, never answered after a drain) or answered more than once (the
//! simulator books prompts per session across connections and lists the unanswered ones
//! in each new connection's `initialize` reply, as a current CLI does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::harness::{Harness, PREFIX};
use super::procs::Proc;
use super::scenarios::{downsample, target};
use super::stats::percentiles;
use super::BenchArgs;

/// How often the simulator's per-session counts are sampled after the kill.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Start-up allowance on top of the lease periods a wait may take.
const SLACK: Duration = Duration::from_secs(60);

/// The prompts of a run as the simulator counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Accounting {
    /// Prompts handed to a session's socket.
    pub sent: u64,
    /// Prompts answered (the first answer of each).
    pub answered: u64,
    /// Sent and never answered.
    pub lost: u64,
    /// Answers to a prompt already answered.
    pub duplicates: u64,
    /// Answers to a request id the session never sent.
    pub unknown: u64,
}

impl Accounting {
    /// From the simulator's `/load/stats`.
    pub fn from_stats(s: &Value) -> Self {
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        let sent = n("prompts_sent");
        let answered = n("answered");
        Accounting {
            sent,
            answered,
            lost: sent.saturating_sub(answered),
            duplicates: n("duplicates"),
            unknown: n("unknown_answers"),
        }
    }

    /// Prompts not answered exactly once (the figure that must be 0).
    pub fn wrong(&self) -> u64 {
        self.lost + self.duplicates + self.unknown
    }
}

/// Session ids `b-N` as the simulator's indexes (`N - 1`); other ids are skipped.
pub fn indexes(sessions: &[String]) -> Vec<usize> {
    sessions
        .iter()
        .filter_map(|s| {
            s.strip_prefix(PREFIX)?
                .parse::<usize>()
                .ok()?
                .checked_sub(1)
        })
        .collect()
}

/// How many of `watched` have a live connection accepted after `before` was read (a
/// connection to the killed member, not yet seen closed, does not count).
pub fn reconnected(watched: &[usize], before: &[u64], accepted: &[u64], live: &[u64]) -> usize {
    watched
        .iter()
        .filter(|&&i| {
            let b = before.get(i).copied().unwrap_or(0);
            accepted.get(i).is_some_and(|&a| a > b) && live.get(i).is_some_and(|&l| l > 0)
        })
        .count()
}

/// The member to kill: the one holding the most leases (the first by id on a tie).
pub fn victim(owners: &BTreeMap<String, usize>) -> Option<&str> {
    owners
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(o, _)| o.as_str())
}

/// The simulator's per-session `live` and `accepted` counts.
async fn per_session(h: &Harness) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let mut v = h.sim_get("sessions").await?;
    let live = serde_json::from_value(v["live"].take()).context("bad /load/sessions")?;
    let accepted = serde_json::from_value(v["accepted"].take()).context("bad /load/sessions")?;
    Ok((live, accepted))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Run the scenario; its figures and chart (sessions back over time since the kill).
pub async fn failover(
    h: &mut Harness,
    args: &BenchArgs,
    rate: f64,
) -> anyhow::Result<(Value, Value)> {
    let n = args.sessions;
    let period = args.lease_period;
    h.write_member_config(n, true)?;
    let ids: Vec<String> = (1..=args.instances).map(|i| format!("bench-{i}")).collect();
    // All at once: a member that starts alone claims every session, and the spread then
    // moves one session per lease period.
    let started = futures_util::future::join_all(ids.iter().map(|id| h.start_member(id))).await;
    let mut members: BTreeMap<String, (Proc, String)> = BTreeMap::new();
    for (id, r) in ids.iter().zip(started) {
        members.insert(id.clone(), r?);
    }
    let result = match args.outage {
        Some(outage) => measure_outage(h, args, rate, outage).await,
        None => measure(h, args, rate, period, &mut members).await,
    };
    for (_, (proc, _)) in members {
        proc.stop(Duration::from_secs(15)).await;
    }
    result
}

async fn measure(
    h: &mut Harness,
    args: &BenchArgs,
    rate: f64,
    period: Duration,
    members: &mut BTreeMap<String, (Proc, String)>,
) -> anyhow::Result<(Value, Value)> {
    let n = args.sessions;
    let pg =
        h.pg.as_ref()
            .context("failover runs on --ledger postgres")?;
    let owners = all_owned(h, n, period).await?;
    let all_connected = h.spawned_at.elapsed();
    h.sim_post("start").await?;
    tokio::time::sleep(args.duration()).await;
    // The owners right before the kill (a spread may still be moving).
    let owners_at_kill = pg.owners()?;
    let victim = victim(&owners_at_kill)
        .context("no lease holder")?
        .to_owned();
    let watched = indexes(&pg.owned_by(&victim)?);
    let (_, before) = per_session(h).await?;
    let at_kill = h.sim_stats().await?;
    let (proc, _) = members.remove(&victim).expect("a member holds the leases");
    let t0 = Instant::now();
    proc.kill().await;
    let mut series = vec![[0.0, watched.len() as f64]];
    let mut first_down = None;
    let back = loop {
        let (live, accepted) = per_session(h).await?;
        let at = t0.elapsed();
        let up = reconnected(&watched, &before, &accepted, &live);
        let down = watched.iter().filter(|&&i| live.get(i) == Some(&0)).count();
        if first_down.is_none() && down > 0 {
            first_down = Some(at);
        }
        series.push([at.as_secs_f64(), up as f64]);
        if up >= watched.len() {
            break at;
        }
        if at > SLACK + period * 10 {
            bail!(
                "{up} of {} sessions of {victim} back after {at:?}",
                watched.len()
            );
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    };
    let owners_after = pg.owners()?;
    tokio::time::sleep(args.duration()).await;
    h.sim_post("stop").await?;
    let fsync = pg.setting("fsync")?;
    let (s, acc) = drain(h, period).await?;
    let values: Vec<[u64; 2]> =
        serde_json::from_value(h.sim_get("latency").await?["values"].take())
            .context("bad /load/latency")?;
    let p = percentiles(&values);
    let human = format!(
        "failover: {} sessions of {victim} (of {n} on {} instances) connected again {:.2} s after SIGKILL \
         (lease period {} s); prompts sent {}, lost {}, answered twice {}, unknown answers {}",
        watched.len(),
        args.instances,
        back.as_secs_f64(),
        period.as_secs(),
        acc.sent,
        acc.lost,
        acc.duplicates,
        acc.unknown,
    );
    eprintln!("ccr-supervisor bench: {human}");
    let limit = ms(period * 2);
    let figures = json!({
        "pg_fsync": fsync,
        "instances": args.instances,
        "lease_period_s": period.as_secs(),
        "rate_per_s": rate,
        "all_owned_and_connected_ms": ms(all_connected),
        "owners_at_start": owners,
        "owners_at_kill": owners_at_kill,
        "owners_after": owners_after,
        "killed": victim,
        "killed_sessions": watched.len(),
        "first_seen_down_ms": first_down.map(ms),
        "reconnected_ms": ms(back),
        "prompts_sent_before_kill": at_kill["prompts_sent"],
        "prompts": acc,
        "replayed_in_initialize": s["replayed"],
        "doubled_connections": s["doubled"],
        "latency_us": p,
        "human": human,
        "targets": {
            "reconnected_ms": target(ms(back), limit),
            "prompts_lost": target(acc.lost as f64, 0.0),
            "prompts_answered_twice": target((acc.duplicates + acc.unknown) as f64, 0.0),
            "prompts_not_answered_exactly_once": target(acc.wrong() as f64, 0.0),
        },
    });
    let chart = json!({"kind": "series", "title": format!("sessions of the killed member connected again (of {})", watched.len()),
        "x": "seconds since SIGKILL", "y": "sessions", "points": downsample(&series, 400)});
    Ok((figures, chart))
}

/// After the load stopped: wait until every prompt sent has its answer (or two lease
/// periods and 10 s); the simulator's stats then, and their accounting (a note says how
/// many were still unanswered).
async fn drain(h: &mut Harness, period: Duration) -> anyhow::Result<(Value, Accounting)> {
    let limit = period * 2 + Duration::from_secs(10);
    let drained = h
        .wait_sim(
            Instant::now(),
            limit,
            Duration::from_millis(50),
            |_, _| {},
            |s| s["outstanding"].as_i64() == Some(0),
        )
        .await
        .is_ok();
    let s = h.sim_stats().await?;
    let acc = Accounting::from_stats(&s);
    if !drained {
        h.notes.push(format!(
            "{} prompts still unanswered {} s after the load stopped",
            acc.lost,
            limit.as_secs()
        ));
    }
    Ok((s, acc))
}

/// Every session owned and connected (bounded by `SLACK` and three lease periods); the
/// owners then.
async fn all_owned(
    h: &Harness,
    n: usize,
    period: Duration,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let pg =
        h.pg.as_ref()
            .context("failover runs on --ledger postgres")?;
    let deadline = Instant::now() + SLACK + period * 3;
    loop {
        let s = h.sim_stats().await?;
        let owners = pg.owners()?;
        let owned: usize = owners.values().sum();
        let live = s["live"].as_u64().unwrap_or(0) as usize;
        if owned >= n && live >= n {
            return Ok(owners);
        }
        if Instant::now() > deadline {
            bail!("not every session owned and connected: {owned} leases, {live} live of {n}; owners {owners:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `--outage`: PostgreSQL stopped for `outage` under load, then started again. Measured:
/// the sessions that reconnected (none should: their leases lapse, their sockets stay), the
/// time from the restart until every lease is valid again, and the prompts lost or answered
/// twice (automatic answers made during the outage are held until they are recorded).
async fn measure_outage(
    h: &mut Harness,
    args: &BenchArgs,
    rate: f64,
    outage: Duration,
) -> anyhow::Result<(Value, Value)> {
    let n = args.sessions;
    let period = args.lease_period;
    let owners = all_owned(h, n, period).await?;
    let all_connected = h.spawned_at.elapsed();
    h.sim_post("start").await?;
    tokio::time::sleep(args.duration()).await;
    let everyone: Vec<usize> = (0..n).collect();
    let (_, before) = per_session(h).await?;
    let at_stop = h.sim_stats().await?;
    h.pg.as_mut()
        .context("failover runs on --ledger postgres")?
        .stop()?;
    let t0 = Instant::now();
    // The outage itself: its length is the scenario.
    tokio::time::sleep(outage).await;
    let (live_at_end, _) = per_session(h).await?;
    h.pg.as_mut()
        .context("failover runs on --ledger postgres")?
        .resume()?;
    let t_back = Instant::now();
    let pg =
        h.pg.as_ref()
            .context("failover runs on --ledger postgres")?;
    let mut series = Vec::new();
    let renewed = loop {
        let at = t_back.elapsed();
        let owned: usize = pg.owners().map(|o| o.values().sum()).unwrap_or(0);
        series.push([at.as_secs_f64(), owned as f64]);
        if owned >= n {
            break at;
        }
        if at > SLACK + period * 10 {
            bail!("{owned} of {n} leases valid {at:?} after PostgreSQL came back");
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    };
    let owners_after = pg.owners()?;
    let fsync = pg.setting("fsync")?;
    tokio::time::sleep(args.duration()).await;
    h.sim_post("stop").await?;
    let (_, acc) = drain(h, period).await?;
    let (live, accepted) = per_session(h).await?;
    let reconnected_sessions = everyone
        .iter()
        .filter(|&&i| accepted.get(i).copied().unwrap_or(0) > before.get(i).copied().unwrap_or(0))
        .count();
    let down_at_end = live_at_end.iter().filter(|&&l| l == 0).count();
    let values: Vec<[u64; 2]> =
        serde_json::from_value(h.sim_get("latency").await?["values"].take())
            .context("bad /load/latency")?;
    let p = percentiles(&values);
    let human = format!(
        "failover --outage: PostgreSQL down {:.1} s under {n} sessions on {} instances (lease period {} s); \
         {reconnected_sessions} sessions reconnected, {down_at_end} down as it came back; every lease valid \
         {:.2} s after it was back; prompts sent {}, lost {}, answered twice {}, unknown answers {}",
        t_back.duration_since(t0).as_secs_f64(),
        args.instances,
        period.as_secs(),
        renewed.as_secs_f64(),
        acc.sent,
        acc.lost,
        acc.duplicates,
        acc.unknown,
    );
    eprintln!("ccr-supervisor bench: {human}");
    let figures = json!({
        "pg_fsync": fsync,
        "instances": args.instances,
        "lease_period_s": period.as_secs(),
        "outage_ms": ms(t_back.duration_since(t0)),
        "rate_per_s": rate,
        "all_owned_and_connected_ms": ms(all_connected),
        "owners_at_start": owners,
        "owners_after": owners_after,
        "sessions_reconnected": reconnected_sessions,
        "sessions_down_when_it_came_back": down_at_end,
        "sessions_live_at_end": live.iter().filter(|&&l| l > 0).count(),
        "leases_valid_again_ms": ms(renewed),
        "prompts_sent_before_outage": at_stop["prompts_sent"],
        "prompts": acc,
        "latency_us": p,
        "human": human,
        "targets": {
            "sessions_reconnected": target(reconnected_sessions as f64, 0.0),
            "prompts_lost": target(acc.lost as f64, 0.0),
            "prompts_answered_twice": target((acc.duplicates + acc.unknown) as f64, 0.0),
        },
    });
    let chart = json!({"kind": "series", "title": format!("valid leases after PostgreSQL came back (of {n})"),
        "x": "seconds since PostgreSQL was back", "y": "leases", "points": downsample(&series, 400)});
    Ok((figures, chart))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_duplicate_and_unknown_answers_are_counted_apart() {
        let s = json!({"prompts_sent": 100, "answered": 97, "duplicates": 2, "unknown_answers": 1});
        let a = Accounting::from_stats(&s);
        assert_eq!(
            a,
            Accounting {
                sent: 100,
                answered: 97,
                lost: 3,
                duplicates: 2,
                unknown: 1
            }
        );
        assert_eq!(a.wrong(), 6);
        let clean = Accounting::from_stats(&json!({"prompts_sent": 5, "answered": 5}));
        assert_eq!(clean.wrong(), 0);
        assert_eq!(Accounting::from_stats(&json!({})), Accounting::default());
    }

    #[test]
    fn only_new_live_connections_count_as_back() {
        let watched = [0, 2, 3];
        let before = [1, 1, 1, 1];
        // 0: a new live connection; 2: the old one, not seen closed yet; 3: new, closed again.
        assert_eq!(
            reconnected(&watched, &before, &[2, 1, 1, 2], &[1, 1, 1, 0]),
            1
        );
        assert_eq!(
            reconnected(&watched, &before, &[2, 1, 2, 2], &[1, 0, 1, 1]),
            3
        );
        assert_eq!(
            reconnected(&[9], &before, &[2; 4], &[1; 4]),
            0,
            "out of range"
        );
    }

    #[test]
    fn session_ids_become_simulator_indexes() {
        let ids = ["b-1", "b-3000", "x-2", "b-0", "b-x"].map(String::from);
        assert_eq!(indexes(&ids), [0, 2999]);
    }

    #[test]
    fn the_victim_is_the_biggest_owner() {
        let owners: BTreeMap<String, usize> = [("bench-1", 5), ("bench-2", 7), ("bench-3", 7)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        assert_eq!(victim(&owners), Some("bench-2"));
        assert_eq!(victim(&BTreeMap::new()), None);
    }
}
