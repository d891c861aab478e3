//! Smoke run of every `ccr-supervisor bench` scenario with a handful of
//! sessions: the real binary spawns the simulator and the supervisor as
//! processes; we check that the one JSON summary line is sane, and for two
//! scenarios the files `--out` writes.

use std::process::Command;

use serde_json::Value;

fn bench(scenario: &str, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ccr-supervisor"))
        .args(["bench", scenario, "--sessions", "5", "--duration", "1"])
        .args(extra)
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{scenario}: {}\n{stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{scenario}: one summary line expected: {stdout}"
    );
    let summary: Value = serde_json::from_str(lines[0]).expect("summary is JSON");
    assert_eq!(summary["scenario"], scenario);
    assert_eq!(summary["sessions"], 5);
    assert!(summary["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(summary["targets"].is_object(), "{summary}");
    summary
}

/// The files `--out` wrote for `scenario` into `dir`: the JSON is the summary
/// printed on stdout, the markdown its table, and the SVG chart there exactly
/// when `chart` is expected.
fn check_out_files(dir: &std::path::Path, scenario: &str, summary: &Value, chart: bool) {
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{scenario}.{ext}")));
    let json: Value = serde_json::from_str(&read("json").expect("json written")).unwrap();
    assert_eq!(&json, summary);
    let md = read("md").expect("markdown written");
    assert!(md.contains(&format!("# bench `{scenario}`")), "{md}");
    assert!(md.contains("| figure | value |"), "{md}");
    match read("svg") {
        Ok(svg) => {
            assert!(chart, "{scenario} has no chart, yet wrote one");
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        }
        Err(e) => assert!(!chart, "{scenario}.svg: {e}"),
    }
}

#[test]
fn connect_reports_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let s = bench("connect", &["--out", out]);
    assert_eq!(s["api_connected"], 5);
    let t = s["all_connected_ms"].as_f64().unwrap();
    assert!(t > 0.0 && t < 30_000.0, "{s}");
    assert!(s["rss_kib"].as_u64().unwrap() > 1000, "{s}");
    check_out_files(dir.path(), "connect", &s, true);
}

#[test]
fn flood_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let s = bench("flood", &["--frame-bytes", "600", "--out", out]);
    check_out_files(dir.path(), "flood", &s, false);
    let sent = s["frames_sent"].as_u64().unwrap();
    assert!(sent > 0, "{s}");
    assert_eq!(s["frames_routed"].as_u64(), Some(sent), "{s}");
    assert_eq!(s["frames_missing"], 0, "{s}");
    assert!(s["cpu_us_per_frame"].as_f64().unwrap() > 0.0, "{s}");
    // Which of the supervisor's threads used the CPU during the flood.
    let threads = s["supervisor_threads_cpu_ms"].as_object().unwrap();
    assert!(!threads.is_empty(), "{s}");
}

#[test]
fn roundtrip_answers_every_prompt_once() {
    let s = bench("roundtrip", &["--rate", "20"]);
    let sent = s["prompts_sent"].as_u64().unwrap();
    assert!(sent > 0, "{s}");
    assert_eq!(s["answered"].as_u64(), Some(sent), "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["latency_us"]["count"].as_u64(), Some(sent), "{s}");
    assert!(s["latency_us"]["p50_us"].as_u64().unwrap() > 0, "{s}");
    assert!(s["answerer"].is_string(), "{s}");
    // The ledger is on in the bench; every write was journaled and timed (the prompt and
    // its decision before the answer, its delivery after), and the applier timed every
    // SQLite transaction.
    let writes = s["ledger"]["writes"].as_u64().unwrap();
    assert!(writes >= 2 * sent && writes <= 3 * sent, "{s}");
    assert!(s["ledger"]["commit_mean_us"].as_f64().unwrap() > 0.0, "{s}");
    let applies = s["ledger"]["apply_transactions"].as_u64().unwrap();
    assert!(applies >= 1, "{s}");
    // The simulator times the round trip on two threads by default, and the
    // supervisor's own histogram counted every answer it wrote, each slower-than
    // count no larger than the one for a shorter bound.
    assert_eq!(s["sim_workers"], 2, "{s}");
    let own = &s["supervisor_decisions"];
    assert_eq!(own["answers"].as_u64(), Some(sent), "{s}");
    let bounds = ["0.1", "0.2", "0.4", "0.8", "1.6", "3.2"];
    assert!(falling(&own["slower_than_ms"], &bounds, sent), "{s}");
    // A harness thread slept 1 ms at a time through the one-second run and
    // counted its late wake-ups, each count no larger than the one before.
    let woke = &s["wakeup_lateness"];
    assert_eq!(woke["sleep_ms"], 1.0, "{s}");
    let sleeps = woke["sleeps"].as_u64().unwrap();
    assert!((50..=2_000).contains(&sleeps), "{s}");
    let late = ["late_over_1ms", "late_over_2ms", "late_over_3ms"];
    assert!(falling(woke, &late, sleeps), "{s}");
}

/// Whether the counts under `keys` of `counts` (present, by rising bound) each
/// are no larger than the one before, the first no larger than `total`.
fn falling(counts: &Value, keys: &[&str], total: u64) -> bool {
    let n: Vec<u64> = keys.iter().map(|k| counts[k].as_u64().unwrap()).collect();
    n.windows(2).all(|w| w[0] >= w[1]) && n[0] <= total
}

#[test]
fn storm_reconnects_everyone() {
    let s = bench("storm", &[]);
    assert!(s["attempts"].as_u64().unwrap() >= 5, "{s}");
    let t = s["reconnected_ms"].as_f64().unwrap();
    assert!(t > 0.0 && t < 30_000.0, "{s}");
    let peak = s["peak_attempts_100ms"].as_u64().unwrap();
    assert!(peak >= 1 && peak <= s["attempts"].as_u64().unwrap(), "{s}");
}

#[test]
fn repeated_runs_report_median_range_and_steal_under_a_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    // `env` runs the supervisor unchanged: the wrapper path without valgrind.
    let s = bench(
        "storm",
        &["--reps", "2", "--supervisor-wrapper", "env", "--out", out],
    );
    assert_eq!(s["reps"]["n"], 2, "{s}");
    let t = &s["reps"]["figures"]["reconnected_ms"];
    let (min, median, max) = (
        t["min"].as_f64().unwrap(),
        t["median"].as_f64().unwrap(),
        t["max"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= median && median <= max, "{s}");
    assert_eq!(t["values"].as_array().unwrap().len(), 2, "{s}");
    assert!(s["host_steal_percent"].as_f64().unwrap() >= 0.0, "{s}");
    assert!(s.get("supervisor_instructions").is_none(), "{s}");
    check_out_files(dir.path(), "storm", &s, true);
    let md = std::fs::read_to_string(dir.path().join("storm.md")).unwrap();
    assert!(md.contains("2 runs:"), "{md}");
}

#[test]
fn roundtrip_with_readers_times_the_answer_posts() {
    let s = bench(
        "roundtrip",
        &["--rate", "20", "--readers", "50", "--api-workers", "1"],
    );
    let sent = s["prompts_sent"].as_u64().unwrap();
    assert!(sent > 0, "{s}");
    assert_eq!(s["answered"].as_u64(), Some(sent), "{s}");
    assert_eq!(
        s["answerer"], "API client (GET /v1/events + POST allow)",
        "{s}"
    );
    assert_eq!(s["readers"]["attached"], 50, "{s}");
    assert_eq!(s["readers"]["refused"], 0, "{s}");
    assert!(s["readers"]["bytes_received"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["api_workers"], 1, "{s}");
    let post = &s["answer_post_latency_us"];
    assert_eq!(post["count"].as_u64(), Some(sent), "{s}");
    assert!(post["p50_us"].as_u64().unwrap() > 0, "{s}");
    assert!(s["targets"]["answer_post_p99_us"].is_object(), "{s}");
    // Stopped with the readers still attached, well inside its grace period.
    let stop = s["supervisor_stop_ms"].as_f64().unwrap();
    assert!(stop > 0.0 && stop < 15_000.0, "{s}");
}

/// True when PostgreSQL's programs are installed (or the system tests are required, so
/// their absence fails the run): the `--ledger postgres` smoke runs need them.
fn postgres_or_skip() -> bool {
    let installed = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some());
    let required = std::env::var("CCR_SYSTEM_TESTS").is_ok_and(|v| v == "required");
    if !installed && !required {
        eprintln!("NOTICE: skipped: no PostgreSQL (Debian package postgresql)");
    }
    installed || required
}

#[test]
fn roundtrip_on_postgres_answers_every_prompt_once() {
    if !postgres_or_skip() {
        return;
    }
    let s = bench(
        "roundtrip",
        &[
            "--rate",
            "20",
            "--ledger",
            "postgres",
            "--pg-fsync",
            "false",
            "--lease-period",
            "1s",
        ],
    );
    assert_eq!(s["ledger_backend"], "postgres", "{s}");
    assert!(s["prompts_sent"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        s["targets"]["prompts_not_answered_exactly_once"]["met"], true,
        "{s}"
    );
    assert_eq!(s["targets"]["p99_us"]["target"], 5000.0, "{s}");
}

#[test]
fn failover_moves_the_killed_members_sessions_and_loses_no_prompt() {
    if !postgres_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let s = bench(
        "failover",
        &[
            "--instances",
            "2",
            "--lease-period",
            "1s",
            "--rate",
            "20",
            "--pg-fsync",
            "false",
            "--out",
            out,
        ],
    );
    check_out_files(dir.path(), "failover", &s, true);
    let killed = s["killed_sessions"].as_u64().unwrap();
    assert!((1..=5).contains(&killed), "{s}");
    assert!(s["reconnected_ms"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["prompts"]["lost"], 0, "{s}");
    assert_eq!(s["prompts"]["duplicates"], 0, "{s}");
    assert_eq!(s["owners_after"].as_object().unwrap().len(), 1, "{s}");
}

#[test]
fn failover_outage_keeps_every_session_connected_and_loses_no_prompt() {
    if !postgres_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let s = bench(
        "failover",
        &[
            "--instances",
            "2",
            "--lease-period",
            "1s",
            "--outage",
            "3s",
            "--rate",
            "20",
            "--pg-fsync",
            "false",
            "--out",
            out,
        ],
    );
    check_out_files(dir.path(), "failover", &s, true);
    assert!(s["outage_ms"].as_f64().unwrap() >= 3000.0, "{s}");
    assert_eq!(s["sessions_reconnected"], 0, "{s}");
    assert!(s["leases_valid_again_ms"].as_f64().is_some(), "{s}");
    assert_eq!(s["prompts"]["lost"], 0, "{s}");
    assert_eq!(s["prompts"]["duplicates"], 0, "{s}");
    assert_eq!(s["owners_after"], s["owners_at_start"], "{s}");
}
