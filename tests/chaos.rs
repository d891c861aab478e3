//! The chaos test's short run (issue #24): the real `ccr-supervisor` binary,
//! `kill -9`ed and restarted on its ledger, against the fault-injecting CCR
//! peer and two random operators; the checker must find no broken invariant.
//! `CHAOS_SEED=<n>` replays a seed's choices (not its timing). The long run is
//! `ccr-supervisor chaos --sessions 300 --duration 30m`.

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
