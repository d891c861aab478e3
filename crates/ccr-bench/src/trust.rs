//! What makes a figure trustworthy: the median and range over repeated runs
//! (`--reps`), the host's steal time during a run (`/proc/stat`), and the
//! supervisor's instruction count when it ran under callgrind
//! (`--supervisor-wrapper 'valgrind --tool=callgrind ...'`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Keys of a summary that are not figures to repeat (or are repeated elsewhere).
const NOT_FIGURES: [&str; 5] = ["chart", "machine", "targets", "notes", "reps"];

/// Median, smallest and largest of `values`; `None` when empty. The median of an
/// even count is the mean of the two middle values.
pub fn median_range(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1]))
}

/// Every numeric leaf of a summary by its dotted path (`latency_us.p99_us`),
/// leaving out the chart, the machine, the targets (copies of figures) and arrays.
pub fn numeric_leaves(summary: &Value) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, f64>) {
        match v {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    out.insert(prefix.to_owned(), f);
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    if prefix.is_empty() && NOT_FIGURES.contains(&k.as_str()) {
                        continue;
                    }
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", summary, &mut out);
    out
}

/// The `reps` object of a repeated run: for each figure present in every run,
/// `{median, min, max}` (`values` in run order too).
pub fn repeated(runs: &[Value]) -> Value {
    let leaves: Vec<BTreeMap<String, f64>> = runs.iter().map(numeric_leaves).collect();
    let mut figures = Map::new();
    if let Some(first) = leaves.first() {
        for key in first.keys() {
            let values: Vec<f64> = leaves.iter().filter_map(|l| l.get(key).copied()).collect();
            if values.len() != runs.len() {
                continue;
            }
            if let Some((median, min, max)) = median_range(&values) {
                figures.insert(
                    key.clone(),
                    json!({"median": median, "min": min, "max": max, "values": values}),
                );
            }
        }
    }
    json!({"n": runs.len(), "figures": figures})
}

/// The aggregate CPU line of `/proc/stat`: steal ticks and all ticks
/// (user, nice, system, idle, iowait, irq, softirq, steal; guest time is
/// already inside user and nice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    /// Time stolen by the hypervisor.
    pub steal: u64,
    /// All of the machine's CPU time.
    pub total: u64,
}

/// Parse the first (`cpu `) line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // Kernels before 2.6.11 had no steal column: count it as zero.
    let steal = fields.get(7).copied().unwrap_or(0);
    Some(CpuTicks {
        steal,
        total: fields.iter().sum(),
    })
}

/// This machine's CPU ticks now (`None` without `/proc/stat`).
pub fn cpu_ticks() -> Option<CpuTicks> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Steal time between two readings as a percentage of all CPU time then.
pub fn steal_percent(before: CpuTicks, after: CpuTicks) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    let steal = after.steal.checked_sub(before.steal)?;
    (total > 0).then(|| (steal as f64 * 1e4 / total as f64).round() / 100.0)
}

/// The instructions (`Ir`) of one callgrind output: its `totals:` line, else its `summary:` line.
pub fn parse_callgrind_total(text: &str) -> Option<u64> {
    let first = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    first("totals:").or_else(|| first("summary:"))
}

/// Where callgrind writes, by a wrapper's words: its `--callgrind-out-file=`
/// (with `%p` replaced by `pid`), else `callgrind.out.<pid>` in the current
/// directory; `None` when the wrapper is not callgrind.
pub fn callgrind_out_file(wrapper: &[String], pid: u32) -> Option<PathBuf> {
    if !wrapper.iter().any(|w| w == "--tool=callgrind") {
        return None;
    }
    let pattern = wrapper
        .iter()
        .find_map(|w| w.strip_prefix("--callgrind-out-file="))
        .unwrap_or("callgrind.out.%p");
    Some(PathBuf::from(pattern.replace("%p", &pid.to_string())))
}

/// The instructions of a callgrind run summed over its output files: `file`
/// itself and, with `--separate-threads=yes`, `file-01`, `file-02`, ...; `None` when none is found.
pub fn callgrind_instructions(file: &Path) -> Option<u64> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = file.file_name()?.to_str()?.to_owned();
    let mut total = None;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name == base
            || name
                .strip_prefix(&base)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()));
        if !ours {
            continue;
        }
        if let Some(n) = std::fs::read_to_string(entry.path())
            .ok()
            .as_deref()
            .and_then(parse_callgrind_total)
        {
            *total.get_or_insert(0) += n;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        assert_eq!(median_range(&[]), None);
        assert_eq!(median_range(&[5.0]), Some((5.0, 5.0, 5.0)));
        assert_eq!(median_range(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median_range(&[4.0, 1.0, 2.0, 10.0]), Some((3.0, 1.0, 10.0)));
    }

    #[test]
    fn repeated_runs_give_median_and_range_of_every_common_figure() {
        let runs = [
            json!({"scenario": "flood", "sessions": 3, "cpu_us_per_frame": 2.0,
                   "latency_us": {"p99_us": 10}, "machine": {"nproc": 2}, "targets": {"x": {"measured": 1}},
                   "only_here": 1, "chart": {"counts": [1, 2]}}),
            json!({"scenario": "flood", "sessions": 3, "cpu_us_per_frame": 4.0,
                   "latency_us": {"p99_us": 30}, "machine": {"nproc": 2}, "targets": {"x": {"measured": 2}}}),
            json!({"scenario": "flood", "sessions": 3, "cpu_us_per_frame": 3.0,
                   "latency_us": {"p99_us": 20}, "machine": {"nproc": 2}, "targets": {"x": {"measured": 3}}}),
        ];
        let r = repeated(&runs);
        assert_eq!(r["n"], 3);
        let f = &r["figures"];
        assert_eq!(f["cpu_us_per_frame"]["median"], 3.0);
        assert_eq!(f["cpu_us_per_frame"]["min"], 2.0);
        assert_eq!(f["cpu_us_per_frame"]["max"], 4.0);
        assert_eq!(f["cpu_us_per_frame"]["values"], json!([2.0, 4.0, 3.0]));
        assert_eq!(f["latency_us.p99_us"]["median"], 20.0);
        assert_eq!(f["sessions"]["median"], 3.0);
        assert!(f.get("only_here").is_none(), "{r}");
        assert!(f.get("machine.nproc").is_none(), "{r}");
        assert!(f.get("targets.x.measured").is_none(), "{r}");
    }

    #[test]
    fn steal_is_read_from_proc_stat() {
        let before = "cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\nintr 1\n";
        let after = "cpu  200 0 100 1500 10 0 5 185 0 0\ncpu0 100 0 50 750 5 0 2 93 0 0\n";
        let b = parse_proc_stat(before).unwrap();
        assert_eq!(
            b,
            CpuTicks {
                steal: 35,
                total: 1000
            }
        );
        let a = parse_proc_stat(after).unwrap();
        assert_eq!(a.total, 2000);
        // 150 of 1000 ticks stolen.
        assert_eq!(steal_percent(b, a), Some(15.0));
        assert_eq!(steal_percent(b, b), None);
        assert_eq!(steal_percent(a, b), None);
        // An old kernel without the steal column.
        let old = parse_proc_stat("cpu  1 2 3 4 5 6 7\n").unwrap();
        assert_eq!(
            old,
            CpuTicks {
                steal: 0,
                total: 28
            }
        );
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert!(cpu_ticks().unwrap().total > 0);
    }

    #[test]
    fn callgrind_totals_are_parsed_and_summed_over_thread_files() {
        let out = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 42\n\
                   cmd:  ccr-supervisor --config x\npart: 1\n\n\ndesc: I1 cache: \n\
                   events: Ir\nsummary: 1234567\n\nfl=(1) a.rs\nfn=(1) main\n3 10\n\ntotals: 1234560\n";
        assert_eq!(parse_callgrind_total(out), Some(1_234_560));
        assert_eq!(parse_callgrind_total("events: Ir\nsummary: 99\n"), Some(99));
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);

        let dir = tempfile::tempdir().unwrap();
        let wrapper: Vec<String> = format!(
            "valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file={}/cg.%p",
            dir.path().display()
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect();
        let file = callgrind_out_file(&wrapper, 77).unwrap();
        assert_eq!(file, dir.path().join("cg.77"));
        std::fs::write(dir.path().join("cg.77-01"), "totals: 100\n").unwrap();
        std::fs::write(dir.path().join("cg.77-02"), "summary: 20\n").unwrap();
        std::fs::write(dir.path().join("cg.770-01"), "totals: 5000\n").unwrap();
        std::fs::write(dir.path().join("cg.77-x"), "totals: 5000\n").unwrap();
        assert_eq!(callgrind_instructions(&file), Some(120));
        assert_eq!(callgrind_instructions(&dir.path().join("cg.78")), None);

        let plain = ["valgrind".to_owned(), "--tool=callgrind".to_owned()];
        assert_eq!(
            callgrind_out_file(&plain, 5),
            Some(PathBuf::from("callgrind.out.5"))
        );
        assert_eq!(callgrind_out_file(&["nice".to_owned()], 5), None);
    }
}
