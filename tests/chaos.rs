//! The chaos test's short run (issue #24): the real `ccr-supervisor` binary,
//! `kill -9`ed and restarted on its ledger, against the fault-injecting CCR
//! peer and two random operators; the checker must find no broken invariant.
//! `CHAOS_SEED=<n>` replays a seed's choices (not its timing). The long run is
//! `ccr-supervisor chaos --sessions 300 --duration 30m`; on a cluster,
//! `ccr-supervisor chaos --instances 3 --sessions 100 --duration 5m`.

use std::path::PathBuf;

use ccr_chaos::{self as chaos, ChaosOptions};

#[actix_rt::test]
async fn short_chaos_run_loses_nothing_and_answers_once() {
    let seed = chaos::seed_from_env().expect("CHAOS_SEED must be a number");
    eprintln!("chaos seed {seed} (re-run with CHAOS_SEED={seed})");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ccr-supervisor"));
    let outcome = match chaos::run(ChaosOptions::short(exe, seed)).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("chaos run failed (seed {seed}): {e:#}"),
    };
    let report = outcome.report();
    assert!(
        outcome.passed(),
        "chaos: invariants broken with seed {seed} (re-run with CHAOS_SEED={seed}):\n{report}"
    );
    eprintln!("{report}");
}

/// The cluster run (issue #29): 3 instances sharing 30 sessions by leases on a throwaway
/// PostgreSQL, each in turn `kill -9`ed, frozen past its lease or stopped gracefully and
/// restarted, the operators answering through any instance; the same invariants, the
/// ledger read from `ccr_prompts`. Skipped without PostgreSQL unless
/// `CCR_SYSTEM_TESTS=required`.
#[actix_rt::test]
async fn short_cluster_chaos_run_loses_nothing_and_answers_once() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    let seed = chaos::seed_from_env().expect("CHAOS_SEED must be a number");
    eprintln!("cluster chaos seed {seed} (re-run with CHAOS_SEED={seed})");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ccr-supervisor"));
    let opts = ChaosOptions {
        postgres: Some(pg),
        ..ChaosOptions::short_cluster(exe, seed)
    };
    let outcome = match chaos::run(opts).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("cluster chaos run failed (seed {seed}): {e:#}"),
    };
    let report = outcome.report();
    assert!(
        outcome.passed(),
        "cluster chaos: invariants broken with seed {seed} (re-run with CHAOS_SEED={seed}):\n{report}"
    );
    eprintln!("{report}");
}
