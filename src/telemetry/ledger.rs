//! The decision ledger: a write that failed (refused by its rules, not storable, or not
//! queued), from whichever thread found out.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{error, warn};

/// The log target these lines always had (for `RUST_LOG` filters and JSON logs' `target`).
const WRITER: &str = "ccr_supervisor::ledger::writer";

/// A ledger write failed; the caller was (or will be) told so too.
#[derive(Debug, Clone, Copy)]
pub struct LedgerWriteFailed<'a> {
    /// The call that queued it (`record_prompt`, `record_decision`, `mark_delivered`, …).
    pub what: &'a str,
    /// Why.
    pub error: &'a dyn Error,
    /// The ledger refused it by its rules (unknown prompt, already decided): a warning,
    /// not an error of storage.
    pub refused: bool,
}

impl LedgerWriteFailed<'_> {
    /// Count it in the ledger's `write_errors` (shown as `ccr_supervisor_ledger_write_errors`
    /// at scrape time) and log it.
    pub fn emit(self, write_errors: &AtomicU64) {
        write_errors.fetch_add(1, Ordering::Relaxed);
        let LedgerWriteFailed {
            what,
            error: err,
            refused,
        } = self;
        if refused {
            warn!(target: WRITER, %err, what, "decision ledger refused a write")
        } else {
            error!(target: WRITER, %err, what, "DECISION LEDGER WRITE FAILED: not recorded")
        }
    }
}
