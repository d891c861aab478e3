//! Pure figures: percentiles, sliding-window peaks, `/proc` parsing, the
//! supervisor's session list, and the flood sequence check.

use std::collections::{BTreeMap, HashMap};

use ccr_protocol::metrics::sample;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

/// Percentiles of a histogram given as `[value_us, count]` pairs (as the simulator reports it).
pub fn percentiles(values: &[[u64; 2]]) -> Percentiles {
    let mut h = Histogram::<u64>::new(3).expect("valid precision");
    for [v, n] in values {
        let _ = h.record_n((*v).max(1), *n);
    }
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean(),
    }
}

/// `bins` equal-width bins from 0 to `upper` (inclusive; larger values land in the last bin).
pub fn bin_counts(values: &[[u64; 2]], upper: u64, bins: usize) -> Vec<u64> {
    let bins = bins.max(1);
    let width = (upper / bins as u64).max(1);
    let mut out = vec![0; bins];
    for [v, n] in values {
        let i = ((v / width) as usize).min(bins - 1);
        out[i] += n;
    }
    out
}

/// Largest number of events in any window of `window_ms` (times in ms, any order).
pub fn peak_in_window(times_ms: &[u32], window_ms: u32) -> usize {
    let mut t = times_ms.to_vec();
    t.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= window_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// `utime + stime` in clock ticks from `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The thread name and `utime + stime` ticks from `/proc/<pid>/task/<tid>/stat`.
pub fn parse_thread_ticks(stat: &str) -> Option<(String, u64)> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    Some((name.to_owned(), parse_cpu_ticks(stat)?))
}

/// CPU milliseconds each thread used between two `thread_ticks` readings
/// (threads born in between count from zero), busiest first, idle threads left
/// out. A thread is named by its name, followed by `#k` when several share it
/// (the k-th of them by thread id, from 1: the order they were started in).
pub fn thread_cpu_ms(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
    hz: u64,
) -> Vec<(String, f64)> {
    let mut same: HashMap<&str, usize> = HashMap::new();
    for (name, _) in after.values() {
        *same.entry(name).or_default() += 1;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    // BTreeMap: by thread id.
    for (tid, (name, ticks)) in after {
        let k = seen.entry(name).or_default();
        *k += 1;
        let used = ticks.saturating_sub(before.get(tid).map_or(0, |(_, t)| *t));
        if used == 0 {
            continue;
        }
        let label = if same[name.as_str()] > 1 {
            format!("{name}#{k}")
        } else {
            name.clone()
        };
        out.push((label, (used * 1000 / hz.max(1)) as f64));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// How much `series` grew between two `/metrics` scrapes (absent before counts
/// as 0); `None` if it is absent after.
fn growth(before: &str, after: &str, series: &str) -> Option<f64> {
    Some(sample(after, series)? - sample(before, series).unwrap_or(0.0))
}

/// Count and mean (µs) of a histogram between two `/metrics` scrapes; `None` if it is absent.
pub fn histogram_delta(before: &str, after: &str, name: &str) -> Option<(u64, f64)> {
    let count = growth(before, after, &format!("{name}_count"))?;
    let sum = growth(before, after, &format!("{name}_sum"))?;
    let mean_us = if count > 0.0 { sum / count * 1e6 } else { 0.0 };
    Some((count as u64, (mean_us * 10.0).round() / 10.0))
}

/// A histogram's observations between two `/metrics` scrapes, and for each of
/// its bucket bounds how many of them were above it: `(bound, count above)`,
/// by bound; `None` if the histogram is absent. `labels` selects one series of a
/// labelled histogram (`source="rule"`, rendered after `le`); `""` for none.
pub fn histogram_above(
    before: &str,
    after: &str,
    name: &str,
    labels: &str,
) -> Option<(u64, Vec<(f64, u64)>)> {
    let (count_series, close) = if labels.is_empty() {
        (format!("{name}_count"), "}".to_owned())
    } else {
        (format!("{name}_count{{{labels}}}"), format!(",{labels}}}"))
    };
    let count = growth(before, after, &count_series)?;
    let prefix = format!("{name}_bucket{{le=\"");
    let mut above: Vec<(f64, u64)> = after
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.split_once('"'))
        .filter(|(_, rest)| rest.starts_with(close.as_str()))
        .filter_map(|(le, _)| {
            let bound = le.parse::<f64>().ok().filter(|b| b.is_finite())?;
            let within = growth(before, after, &format!("{prefix}{le}\"{close}"))?;
            Some((bound, (count - within).max(0.0) as u64))
        })
        .collect();
    above.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some((count.max(0.0) as u64, above))
}

/// What the bench needs from the supervisor's `GET /v1/sessions`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SessionsView {
    /// Sessions listed.
    pub total: usize,
    /// Sessions in state `connected`.
    pub connected: usize,
    /// `counters.frames_in.sdk` by session id.
    pub sdk: HashMap<String, u64>,
}

/// Parse the body of `GET /v1/sessions`.
pub fn sessions_view(body: &Value) -> SessionsView {
    let mut view = SessionsView::default();
    for s in body["sessions"].as_array().into_iter().flatten() {
        view.total += 1;
        if s["state"] == "connected" {
            view.connected += 1;
        }
        if let (Some(id), Some(n)) = (
            s["id"].as_str(),
            s.pointer("/counters/frames_in/sdk").and_then(Value::as_u64),
        ) {
            view.sdk.insert(id.to_owned(), n);
        }
    }
    view
}

/// Sessions whose supervisor count differs from what the simulator delivered
/// (`delivered[i]` belongs to `prefix{i+1}`): `(frames missing in total, sessions off)`.
pub fn compare_counts(delivered: &[u64], prefix: &str, view: &SessionsView) -> (i64, usize) {
    let mut missing = 0i64;
    let mut off = 0;
    for (i, sent) in delivered.iter().enumerate() {
        let seen = view
            .sdk
            .get(&format!("{prefix}{}", i + 1))
            .copied()
            .unwrap_or(0);
        if seen != *sent {
            off += 1;
            missing += *sent as i64 - seen as i64;
        }
    }
    (missing, off)
}

/// Per-session order check of SDK frames seen on the event stream.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SeqCheck {
    /// SDK frames checked.
    pub frames: u64,
    /// Frames whose sequence number was not above the previous one of the session.
    pub reordered: u64,
    /// Sequence numbers skipped (frames missing from the stream).
    pub skipped: u64,
    #[serde(skip)]
    last: HashMap<String, u64>,
}

impl SeqCheck {
    /// Check the next frame `seq` of `session`.
    pub fn observe(&mut self, session: &str, seq: u64) {
        self.frames += 1;
        match self.last.get_mut(session) {
            None => {
                self.skipped += seq;
                self.last.insert(session.to_owned(), seq);
            }
            Some(last) if seq <= *last => self.reordered += 1,
            Some(last) => {
                self.skipped += seq - *last - 1;
                *last = seq;
            }
        }
    }

    /// Frames missing at the end, given what the simulator delivered per session.
    pub fn missing_at_end(&self, delivered: &[u64], prefix: &str) -> u64 {
        delivered
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let next = self
                    .last
                    .get(&format!("{prefix}{}", i + 1))
                    .map_or(0, |l| l + 1);
                n.saturating_sub(next)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn histogram_delta_between_scrapes() {
        let before = "# TYPE x_seconds histogram\nx_seconds_sum 0.5\nx_seconds_count 10\n\
                      x_seconds_bucket{le=\"0.1\"} 10\nx_seconds_other 7\n# EOF\n";
        let after = "x_seconds_sum 0.8\nx_seconds_count 13\n# EOF\n";
        assert_eq!(
            histogram_delta(before, after, "x_seconds"),
            Some((3, 100_000.0))
        );
        assert_eq!(
            histogram_delta("", after, "x_seconds"),
            Some((13, 61_538.5))
        );
        assert_eq!(histogram_delta(before, "# EOF\n", "x_seconds"), None);
    }

    #[test]
    fn observations_above_each_bucket_between_scrapes() {
        let before = "x_seconds_count 4\nx_seconds_bucket{le=\"0.001\"} 3\n\
                      x_seconds_bucket{le=\"0.002\"} 4\nx_seconds_bucket{le=\"+Inf\"} 4\n";
        let after = "x_seconds_count 14\nx_seconds_bucket{le=\"0.002\"} 12\n\
                     x_seconds_bucket{le=\"0.001\"} 10\nx_seconds_bucket{le=\"+Inf\"} 14\n";
        // 10 new: 7 within 1 ms, 8 within 2 ms.
        assert_eq!(
            histogram_above(before, after, "x_seconds", ""),
            Some((10, vec![(0.001, 3), (0.002, 2)]))
        );
        assert_eq!(histogram_above(before, "", "x_seconds", ""), None);
        // One series of a labelled histogram.
        let labelled =
            "x_seconds_count{source=\"rule\"} 3\nx_seconds_count{source=\"operator\"} 9\n\
                        x_seconds_bucket{le=\"0.001\",source=\"rule\"} 2\n\
                        x_seconds_bucket{le=\"0.001\",source=\"operator\"} 0\n";
        assert_eq!(
            histogram_above("", labelled, "x_seconds", "source=\"rule\""),
            Some((3, vec![(0.001, 1)]))
        );
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let values: Vec<[u64; 2]> = (1..=1000).map(|v| [v, 1]).collect();
        let p = percentiles(&values);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_us, 500);
        assert_eq!(p.p99_us, 990);
        assert_eq!(p.p999_us, 999);
        assert_eq!(p.max_us, 1000);
        assert!((p.mean_us - 500.5).abs() < 0.5);
        assert_eq!(percentiles(&[]), Percentiles::default());
    }

    #[test]
    fn bins_clamp_into_the_last() {
        assert_eq!(
            bin_counts(&[[0, 1], [9, 2], [10, 3], [500, 4]], 40, 4),
            vec![3, 3, 0, 4]
        );
    }

    #[test]
    fn window_peak() {
        assert_eq!(peak_in_window(&[], 100), 0);
        assert_eq!(peak_in_window(&[5, 0, 99, 100, 150, 199], 100), 3);
        assert_eq!(peak_in_window(&[10; 7], 100), 7);
        assert_eq!(peak_in_window(&[0, 100, 200], 100), 1);
    }

    #[test]
    fn cpu_ticks_from_proc_stat() {
        let stat = "4242 (ccr (super) visor) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn sessions_body() {
        let body = json!({"sessions":[
            {"id":"b-1","state":"connected","counters":{"frames_in":{"sdk":3}}},
            {"id":"b-2","state":"reconnecting","counters":{"frames_in":{"sdk":1}}},
        ]});
        let v = sessions_view(&body);
        assert_eq!((v.total, v.connected), (2, 1));
        assert_eq!(compare_counts(&[3, 1], "b-", &v), (0, 0));
        assert_eq!(compare_counts(&[4, 1, 2], "b-", &v), (3, 2));
    }

    #[test]
    fn sequence_check() {
        let mut c = SeqCheck::default();
        for (s, n) in [
            ("s1", 0),
            ("s2", 0),
            ("s1", 1),
            ("s1", 3),
            ("s1", 2),
            ("s2", 1),
        ] {
            c.observe(s, n);
        }
        assert_eq!((c.frames, c.reordered, c.skipped), (6, 1, 1));
        assert_eq!(c.missing_at_end(&[4, 2], "s"), 0);
        assert_eq!(c.missing_at_end(&[5, 2, 1], "s"), 2);
        let mut c = SeqCheck::default();
        c.observe("x1", 0);
        assert_eq!(c.missing_at_end(&[3, 1], "x"), 3);
    }

    #[test]
    fn thread_cpu_is_named_and_numbered() {
        let stat = |name: &str, u: u64, s: u64| {
            format!("7 ({name}) S 1 7 7 0 -1 4194560 10 0 0 0 {u} {s} 0 0 20 0 3 0 5 100 10")
        };
        assert_eq!(
            parse_thread_ticks(&stat("actix-rt|system:0|arbiter:1", 40, 2)),
            Some(("actix-rt|system:0|arbiter:1".to_owned(), 42))
        );
        assert_eq!(parse_thread_ticks("garbage"), None);
        let read = |list: &[(u32, &str, u64)]| -> BTreeMap<u32, (String, u64)> {
            list.iter()
                .map(|&(tid, n, t)| (tid, parse_thread_ticks(&stat(n, t, 0)).unwrap()))
                .collect()
        };
        let before = read(&[
            (1, "main", 10),
            (2, "worker", 5),
            (3, "worker", 5),
            (4, "idle", 3),
        ]);
        let after = read(&[
            (1, "main", 30),
            (2, "worker", 15),
            (3, "worker", 25),
            (4, "idle", 3),
            (5, "new", 1),
        ]);
        assert_eq!(
            thread_cpu_ms(&before, &after, 100),
            vec![
                ("main".to_owned(), 200.0),
                ("worker#2".to_owned(), 200.0),
                ("worker#1".to_owned(), 100.0),
                ("new".to_owned(), 10.0)
            ]
        );
    }
}
