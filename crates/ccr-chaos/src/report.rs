//! The human report of a run: figures, violations by kind, and for the first
//! few of each kind a timeline of everything that touched that prompt.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::check::{Kind, Verdict, Violation};
use super::process::{RULE_ID, RULE_TOOL};
use super::records::{ApiResult, Records, Signal};
use ccr_sim::WireEvent;

/// Timelines printed per violation kind.
const TIMELINES_PER_KIND: usize = 3;
/// One-line violations listed per kind.
const LINES_PER_KIND: usize = 12;

/// One RSS sample of the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssSample {
    /// Time since the run started.
    pub at: Duration,
    /// The process sampled.
    pub pid: u32,
    /// Its cluster instance id (empty for a single supervisor).
    pub instance: String,
    /// `VmRSS` in KiB.
    pub kib: u64,
}

/// How long a cluster took to move a faulted instance's sessions to the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// The faulted instance.
    pub instance: String,
    /// What was done to it.
    pub how: Signal,
    /// From the signal until every session was under a live lease of another instance;
    /// `None` when the instance ran again first (or timing gave up).
    pub took: Option<Duration>,
    /// Timing gave up (the takeover did not happen in 30 s) with the instance still away.
    pub timed_out: bool,
}

/// Figures of the run besides the checker's counts.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Sessions.
    pub sessions: usize,
    /// Supervisor processes (cluster instances; 1 for a single supervisor).
    pub instances: usize,
    /// The cluster's lease period (`None` for a single supervisor).
    pub lease_period: Option<Duration>,
    /// Each timed takeover (cluster runs).
    pub takeovers: Vec<Takeover>,
    /// Length of the chaos phase.
    pub chaos: Duration,
    /// How long the drain took.
    pub drain: Duration,
    /// Whether every prompt was settled before the drain timeout.
    pub drained: bool,
    /// Time from `kill -9` (in a cluster: from the restart) to the new process's API being up.
    pub restarts: Vec<Duration>,
    /// RSS samples over the run.
    pub rss: Vec<RssSample>,
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn at(start: Instant, t: Instant) -> String {
    format!("{:>9.3}s", t.saturating_duration_since(start).as_secs_f64())
}

/// The whole report.
pub fn render(seed: u64, r: &Records, v: &Verdict, f: &Figures) -> String {
    let c = &v.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos: seed {seed} (re-run with CHAOS_SEED={seed} or --seed {seed}), {} sessions, {} of chaos, drain {} ({})",
        f.sessions,
        secs(f.chaos),
        secs(f.drain),
        if f.drained { "every prompt settled" } else { "TIMED OUT" }
    );
    let _ = writeln!(
        out,
        "  prompts {} (re-sent on new connections {} times), withdrawn with a cancel {}, \
         withdrawn while disconnected {}, settled by an answer {} ({} after a replay), \
         answer frames {} (resends after a replay {}, crossed a cancel {})",
        c.prompts,
        c.replays,
        c.cancels,
        c.withdrawn_unseen,
        c.answered,
        c.answered_after_replay,
        c.answer_frames,
        c.resends,
        c.crossed_cancels
    );
    let _ = writeln!(
        out,
        "  policy rule {RULE_ID} ({RULE_TOOL}): its prompts {}, settled by the rule {}, \
         by operators (other prompts) {}; rule prompts an operator tried to answer {}",
        c.rule_prompts, c.rule_answered, c.operator_answered, c.rule_prompts_tried
    );
    let _ = writeln!(
        out,
        "  API: 200 sent {}, 200 queued {}, 409 already_answered {}, 409 prompt_cancelled {}, \
         404 unknown_prompt {}, other {}, no HTTP answer {}; 200s for prompts withdrawn first {}",
        c.api_sent,
        c.api_queued,
        c.api_already_answered,
        c.api_prompt_cancelled,
        c.api_unknown_prompt,
        c.api_other,
        c.api_failed,
        c.acked_then_withdrawn
    );
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for fault in &r.faults {
        let kind = fault.kind.split(' ').next().unwrap_or_default().to_owned();
        *faults.entry(kind).or_default() += 1;
    }
    let faults: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(out, "  faults: {}", faults.join(", "));
    let mut restarts = f.restarts.clone();
    restarts.sort();
    if f.instances > 1 {
        render_cluster(&mut out, r, f);
    }
    let _ = writeln!(
        out,
        "  {} restarts {} (API up: median {}, max {}); crashes {}; ledger rows {} \
         ({} answers acted on without delivered_at)",
        if f.instances > 1 {
            "instance"
        } else {
            "kill -9"
        },
        restarts.len(),
        restarts
            .get(restarts.len() / 2)
            .map_or("-".into(), |d| format!("{} ms", d.as_millis())),
        restarts
            .last()
            .map_or("-".into(), |d| format!("{} ms", d.as_millis())),
        r.crashes.len(),
        c.ledger_rows,
        c.rows_without_delivery
    );
    render_rss(&mut out, &f.rss);
    if v.violations.is_empty() {
        let _ = writeln!(out, "no violations");
        return out;
    }
    let mut by_kind: BTreeMap<Kind, Vec<&Violation>> = BTreeMap::new();
    for x in &v.violations {
        by_kind.entry(x.kind).or_default().push(x);
    }
    let summary: Vec<String> = by_kind
        .iter()
        .map(|(k, xs)| {
            let across = xs.iter().filter(|x| x.across_restart).count();
            format!("{} {} ({across} across a kill -9)", k.name(), xs.len())
        })
        .collect();
    let _ = writeln!(
        out,
        "VIOLATIONS: {} ({})",
        v.violations.len(),
        summary.join(", ")
    );
    let mut shown = std::collections::HashSet::new();
    for (kind, xs) in &by_kind {
        let _ = writeln!(out, "--- {} ({}):", kind.name(), xs.len());
        for x in xs.iter().take(LINES_PER_KIND) {
            let restart = if x.across_restart {
                " [across a kill -9]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {}/{}: {}{restart}",
                x.session, x.request_id, x.detail
            );
        }
        if xs.len() > LINES_PER_KIND {
            let _ = writeln!(out, "  ... and {} more", xs.len() - LINES_PER_KIND);
        }
        for x in xs.iter().take(TIMELINES_PER_KIND) {
            if x.request_id.is_empty() {
                continue;
            }
            if !shown.insert((&x.session, &x.request_id)) {
                let _ = writeln!(out, "  timeline of {}/{}: above", x.session, x.request_id);
                continue;
            }
            let _ = writeln!(out, "  timeline of {}/{}:", x.session, x.request_id);
            out.push_str(&timeline(r, &x.session, &x.request_id));
        }
    }
    out
}

/// The cluster's faults by kind and instance, and the takeover times against 2 lease periods.
fn render_cluster(out: &mut String, r: &Records, f: &Figures) {
    let mut by: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for k in &r.kills {
        let how = match k.how {
            Signal::Kill9 => "kill -9",
            Signal::Term => "SIGTERM",
            Signal::Stop(_) => "SIGSTOP",
        };
        *by.entry(how.to_owned())
            .or_default()
            .entry(k.instance.as_str())
            .or_default() += 1;
    }
    let faults: Vec<String> = by
        .iter()
        .map(|(how, per)| {
            let total: u64 = per.values().sum();
            let per: Vec<String> = per.iter().map(|(i, n)| format!("{i} {n}")).collect();
            format!("{how} {total} ({})", per.join(", "))
        })
        .collect();
    let period = f.lease_period.unwrap_or_default();
    let _ = writeln!(
        out,
        "  cluster: {} instances, lease period {}; faults: {}",
        f.instances,
        secs(period),
        if faults.is_empty() {
            "none".to_owned()
        } else {
            faults.join(", ")
        }
    );
    for how in ["kill -9", "SIGSTOP", "SIGTERM"] {
        let of: Vec<&Takeover> = f
            .takeovers
            .iter()
            .filter(|t| t.how.describe().starts_with(how))
            .collect();
        if of.is_empty() {
            continue;
        }
        let mut took: Vec<Duration> = of.iter().filter_map(|t| t.took).collect();
        took.sort();
        let slow = took.iter().filter(|d| **d > 2 * period).count();
        let _ = writeln!(
            out,
            "  takeover after {how} (every session leased elsewhere): {} timed of {}, median {}, \
             max {}, over 2 lease periods {slow}; back before taken over {}, not taken over in 30s {}",
            took.len(),
            of.len(),
            took.get(took.len() / 2).map_or("-".into(), |d| format!("{} ms", d.as_millis())),
            took.last().map_or("-".into(), |d| format!("{} ms", d.as_millis())),
            of.iter().filter(|t| t.took.is_none() && !t.timed_out).count(),
            of.iter().filter(|t| t.timed_out).count(),
        );
    }
}

fn render_rss(out: &mut String, rss: &[RssSample]) {
    if rss.is_empty() {
        return;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let max = rss.iter().map(|s| s.kib).max().unwrap_or(0);
    let step = rss.len().div_ceil(24).max(1);
    let shown: Vec<String> = rss
        .iter()
        .step_by(step)
        .chain(rss.last())
        .map(|s| format!("{}={:.1}", secs(s.at), mib(s.kib)))
        .collect();
    let _ = writeln!(
        out,
        "  supervisor RSS MiB ({} samples, max {:.1}): {}",
        rss.len(),
        mib(max),
        shown.join(" ")
    );
    // Per process (each kill -9 starts a fresh one): growth within a lifetime shows a leak.
    let mut lives: Vec<(u32, &RssSample, &RssSample, u64)> = Vec::new();
    for s in rss {
        match lives.iter_mut().find(|l| l.0 == s.pid) {
            Some((_, _, last, top)) => {
                *last = s;
                *top = (*top).max(s.kib);
            }
            None => lives.push((s.pid, s, s, s.kib)),
        }
    }
    let lives: Vec<String> = lives
        .iter()
        .map(|(pid, first, last, top)| {
            let who = match first.instance.as_str() {
                "" => String::new(),
                i => format!("{i} "),
            };
            format!(
                "{who}pid {pid} {}-{}: {:.1}->{:.1} (max {:.1})",
                secs(first.at),
                secs(last.at),
                mib(first.kib),
                mib(last.kib),
                mib(*top)
            )
        })
        .collect();
    let _ = writeln!(out, "  RSS per process, MiB: {}", lives.join("; "));
}

/// Everything that touched one prompt, in time order.
pub fn timeline(r: &Records, session: &str, request_id: &str) -> String {
    let mut lines: Vec<(Instant, String)> = Vec::new();
    let mut conns = Vec::new();
    for rec in r.wire.iter().filter(|w| w.session == session) {
        let line = match &rec.event {
            WireEvent::Prompted {
                request_id: id,
                conn,
            } if id == request_id => {
                conns.extend(*conn);
                Some(match conn {
                    Some(c) => format!("peer emits the prompt on connection {c}"),
                    None => "peer emits the prompt while disconnected".to_owned(),
                })
            }
            WireEvent::Attached { conn, replayed } if replayed.iter().any(|x| x == request_id) => {
                conns.push(*conn);
                Some(format!("connection {conn} opens; peer replays the prompt"))
            }
            WireEvent::Cancelled {
                request_id: id,
                conn,
            } if id == request_id => Some(match conn {
                Some(c) => format!("peer withdraws it (cancel on connection {c})"),
                None => "peer withdraws it while disconnected (no cancel; not replayed any more)"
                    .to_owned(),
            }),
            WireEvent::Answered {
                request_id: id,
                conn,
                body,
                settled,
            } if id == request_id => {
                conns.push(*conn);
                let key = super::records::AnswerKey::from_body(body);
                let how = if *settled {
                    "settles it"
                } else {
                    "not outstanding"
                };
                Some(format!(
                    "peer receives {} on connection {conn} ({how})",
                    key.describe()
                ))
            }
            _ => None,
        };
        if let Some(line) = line {
            lines.push((rec.at, line));
        }
    }
    conns.sort_unstable();
    conns.dedup();
    for rec in r.wire.iter().filter(|w| w.session == session) {
        let line = match &rec.event {
            WireEvent::Attached { conn, replayed }
                if conns.contains(conn) && !replayed.iter().any(|x| x == request_id) =>
            {
                format!("connection {conn} opens")
            }
            WireEvent::Detached { conn } if conns.contains(conn) => {
                format!("connection {conn} ends")
            }
            _ => continue,
        };
        lines.push((rec.at, line));
    }
    let (first, last) = match (
        lines.iter().map(|l| l.0).min(),
        lines.iter().map(|l| l.0).max(),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => (r.start, r.start),
    };
    let window =
        |t: Instant| t + Duration::from_secs(2) >= first && t <= last + Duration::from_secs(2);
    for a in r
        .attempts
        .iter()
        .filter(|a| a.session == session && a.request_id == request_id)
    {
        let result = match &a.result {
            ApiResult::Accepted { delivery } => format!("200 {delivery}"),
            ApiResult::Refused { status, code } => format!("{status} {code}"),
            ApiResult::Failed(e) => format!("no answer ({e})"),
        };
        let ms = a.done_at.saturating_duration_since(a.sent_at).as_millis();
        let who = |instance: &str, pid: u32| match instance {
            "" => format!("pid {pid}"),
            i => format!("{i} pid {pid}"),
        };
        let listed = match a.listed_by.0 == a.pid {
            true => String::new(),
            false => format!(" (listed by {})", who(&a.listed_by.1, a.listed_by.0)),
        };
        lines.push((
            a.sent_at,
            format!(
                "{} posts {} to {}{listed} -> {result} after {ms} ms",
                a.operator,
                a.answer.describe(),
                who(&a.instance, a.pid),
            ),
        ));
    }
    for k in r.kills.iter().filter(|k| window(k.at)) {
        let who = match k.instance.as_str() {
            "" => "supervisor".to_owned(),
            i => format!("instance {i}"),
        };
        lines.push((k.at, format!("{} of {who} pid {}", k.how.describe(), k.pid)));
    }
    for f in r
        .faults
        .iter()
        .filter(|f| f.session == session && window(f.at))
    {
        lines.push((f.at, format!("fault on the session: {}", f.kind)));
    }
    lines.sort_by_key(|l| l.0);
    let mut out = String::new();
    for (t, line) in lines {
        let _ = writeln!(out, "    {} {line}", at(r.start, t));
    }
    match r
        .ledger
        .iter()
        .find(|row| row.session == session && row.request_id == request_id)
    {
        Some(row) => {
            let _ = writeln!(
                out,
                "    ledger: outcome {}, decided_by {}, answer {}, delivered {}",
                row.outcome,
                row.decided_by.as_deref().unwrap_or("-"),
                row.answer.as_ref().map_or("-".into(), |k| k.describe()),
                row.delivered
            );
        }
        None => out.push_str("    ledger: no row\n"),
    }
    out
}
