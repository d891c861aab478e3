//! The registry renders every family, in both formats.

use super::*;

#[test]
fn a_sharded_counter_sums_what_every_thread_counted() {
    let m = Metrics::new();
    std::thread::scope(|s| {
        for _ in 0..2 * SHARDS {
            s.spawn(|| {
                for _ in 0..1000 {
                    m.frames.sdk.inc();
                }
            });
        }
    });
    m.frames.sdk.inc_by(5);
    assert_eq!(m.frames.sdk.get(), 2 * SHARDS as u64 * 1000 + 5);
}

fn scenario() -> (Arc<Metrics>, Snapshot) {
    let m = Metrics::new();
    m.frames.sdk.inc_by(3);
    m.decision("allowed", "rule");
    m.decision_latency.observe("rule", 0.002);
    m.decision_latency.observe("operator", 90.0);
    let snapshot = Snapshot {
        sessions_by_state: vec!["connected".into(), "connected".into(), "failed".into()],
        prompts_pending: 2,
        oldest_prompt_age_secs: 1.5,
        stream_subscribers: 1,
        ledger_write_errors: 4,
    };
    (m, snapshot)
}

#[test]
fn renders_openmetrics_with_values() {
    let (m, snapshot) = scenario();
    let text = m.render(&snapshot, Format::OpenMetrics);
    for line in [
        "ccr_supervisor_frames_in_total{kind=\"sdk\"} 3",
        "ccr_supervisor_sessions{state=\"connected\"} 2",
        "ccr_supervisor_sessions{state=\"reconnecting\"} 0",
        "ccr_supervisor_decisions_total{outcome=\"allowed\",source=\"rule\"} 1",
        "ccr_supervisor_prompts_pending 2",
        "ccr_supervisor_decision_latency_seconds_count{source=\"rule\"} 1",
        "ccr_supervisor_decision_latency_seconds_count{source=\"operator\"} 1",
        "ccr_supervisor_decision_latency_seconds_count{source=\"timeout\"} 0",
        "ccr_supervisor_decision_latency_seconds_bucket{le=\"120.0\",source=\"operator\"} 1",
        "ccr_supervisor_decision_latency_seconds_bucket{le=\"60.0\",source=\"operator\"} 0",
        "# UNIT ccr_supervisor_decision_latency_seconds seconds",
        "# UNIT ccr_supervisor_prompt_oldest_age_seconds seconds",
        "# UNIT ccr_supervisor_resolved_prompts_bytes bytes",
        "# TYPE ccr_supervisor_ledger_write_errors counter",
        "ccr_supervisor_ledger_write_errors_total 4",
        "# UNIT process_cpu_seconds seconds",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line}: {text}");
    }
    let build = format!(
        "ccr_supervisor_build_info{{version=\"{}\",commit=\"{GIT_COMMIT}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn the_ledger_error_counter_never_goes_down() {
    let (m, mut snapshot) = scenario();
    m.render(&snapshot, Format::Text);
    snapshot.ledger_write_errors = 1;
    let text = m.render(&snapshot, Format::Text);
    assert!(
        text.contains("\nccr_supervisor_ledger_write_errors_total 4\n"),
        "{text}"
    );
}

#[test]
fn renders_the_text_format_with_help_on_every_family() {
    let (m, snapshot) = scenario();
    let text = m.render(&snapshot, Format::Text);
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    for line in [
        "# HELP ccr_supervisor_frames_in_total Inbound frames by kind.",
        "# TYPE ccr_supervisor_frames_in_total counter",
        "# TYPE ccr_supervisor_ledger_write_errors_total counter",
        "# TYPE process_cpu_seconds_total counter",
        "ccr_supervisor_frames_in_total{kind=\"sdk\"} 3",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line}: {text}");
    }
    // Every sample's family has a HELP and a TYPE line.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        let name = sample.split(['{', ' ']).next().unwrap();
        let family = families.iter().any(|f| {
            name == *f
                || ["_sum", "_count", "_bucket"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f))
        });
        assert!(family, "{name} has no family: {text}");
        assert!(
            text.contains(&format!("# HELP {name} ")) || family,
            "{name}"
        );
    }
    for f in &families {
        assert!(text.contains(&format!("# HELP {f} ")), "{f} has no HELP");
    }
}

#[test]
fn latency_series_follow_their_sources_and_unknown_ones_count_as_operator() {
    let m = Metrics::new();
    let l = &m.decision_latency;
    assert_eq!(
        l.series.each_ref().map(|(s, _)| *s),
        DecisionLatency::SOURCES,
        "SOURCES is the series order"
    );
    l.observe("timeout", 600.0);
    l.observe("someone", 1.0);
    let text = m.render(&Snapshot::default(), Format::Text);
    for (source, n) in [("timeout", 1), ("operator", 1), ("rule", 0), ("limit", 0)] {
        let line =
            format!("ccr_supervisor_decision_latency_seconds_count{{source=\"{source}\"}} {n}\n");
        assert!(text.contains(&line), "{line}: {text}");
    }
}

#[test]
fn cluster_figures_render_once_registered() {
    let (m, snapshot) = scenario();
    let before = m.render(&snapshot, Format::Text);
    assert!(
        !before.contains("cluster"),
        "absent while clustering is off"
    );
    let stats = ClusterStats::default();
    m.register_cluster(&stats);
    stats.leases_held.set(100);
    stats.leases_lapsed.set(7);
    stats.takeovers.inc_by(3);
    stats.renewals_failed.inc();
    stats.members.set(3);
    let text = m.render(&snapshot, Format::Text);
    for line in [
        "# TYPE ccr_supervisor_cluster_leases_held gauge",
        "ccr_supervisor_cluster_leases_held 100",
        "ccr_supervisor_cluster_leases_lapsed 7",
        "# TYPE ccr_supervisor_cluster_takeovers_total counter",
        "ccr_supervisor_cluster_takeovers_total 3",
        "ccr_supervisor_cluster_lease_renewals_failed_total 1",
        "ccr_supervisor_cluster_members 3",
        "ccr_supervisor_cluster_listen_reconnects_total 0",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line}: {text}");
    }
}
