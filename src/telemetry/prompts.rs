//! Prompts in the permission registry's shell: the size of its memory of finished
//! prompts, and the ledger writes the shell keeps retrying. (What happens to each prompt
//! is in [`super::permissions`].)

use std::error::Error;

use tracing::error;

use crate::metrics::Metrics;

/// The log target these lines always had (for `RUST_LOG` filters and JSON logs' `target`).
const PERFORM: &str = "ccr_supervisor::registry::perform";

/// The registry's memory of finished prompts changed size.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedMemorySized {
    /// Records held.
    pub records: usize,
    /// Bytes charged.
    pub bytes: usize,
}

impl ResolvedMemorySized {
    /// Set `ccr_supervisor_resolved_prompts` and `ccr_supervisor_resolved_prompts_bytes`.
    pub fn emit(self, metrics: &Metrics) {
        metrics.set_resolved(self.records, self.bytes);
    }
}

/// A ledger write the registry cannot do without failed (the ledger counted and logged
/// the failure itself): it is retried in the background until it succeeds.
#[derive(Debug, Clone, Copy)]
pub struct LedgerWriteRetrying<'a> {
    /// What was being written.
    pub what: &'static str,
    /// Why it failed.
    pub error: &'a dyn Error,
}

impl LedgerWriteRetrying<'_> {
    /// Log it, loudly (under the caller's `ledger` span).
    pub fn emit(self) {
        let LedgerWriteRetrying { what, error } = self;
        error!(target: PERFORM, error = %error, "LEDGER WRITE FAILED: {what}; retrying in the background");
    }
}

/// A retried ledger write still fails (emitted every 16th failed attempt).
#[derive(Debug, Clone, Copy)]
pub struct LedgerWriteStillFailing<'a> {
    /// What is being written.
    pub what: &'static str,
    /// Why it failed this time.
    pub error: &'a dyn Error,
    /// Attempts so far, after the first.
    pub attempt: u32,
}

impl LedgerWriteStillFailing<'_> {
    /// Log it, loudly (under the caller's `ledger` span).
    pub fn emit(self) {
        let LedgerWriteStillFailing {
            what,
            error,
            attempt,
        } = self;
        error!(target: PERFORM, error = %error, attempt, "LEDGER WRITE STILL FAILING: {what}; retrying");
    }
}
