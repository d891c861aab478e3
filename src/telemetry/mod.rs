//! Telemetry: the logging setup ([`init`]) and one typed event per notable happening.
//!
//! Each happening (a frame received, a session's state changing, a ledger write
//! failing…) is a small struct whose `emit` does everything that happening is owed in
//! one call: its `tracing` line (under the caller's span, which carries `session_id`
//! and, for a prompt, `request_id`), its Prometheus metric ([`crate::metrics`]), its
//! per-session counter where there is one, and the bus [`Event`] operators see where
//! there is one — instead of three channels kept in step by hand at every branch (as
//! vector's `src/internal_events/` do it). `emit` takes exactly the handles it updates,
//! so a call site shows what a happening touches.
//!
//! Events by area, and who emits them:
//!
//! - [`frames`]: [`frames::FrameReceived`], [`frames::FrameSkipped`],
//!   [`frames::FrameUnparseable`], [`frames::EchoDropped`], [`frames::SdkMessageTooDeep`],
//!   [`frames::UnreadableFrame`] — the session router, for every inbound frame.
//! - [`sessions`]: [`sessions::SessionStateChanged`], [`sessions::ConnectionEnded`],
//!   [`sessions::ReconnectScheduled`], [`sessions::WatchdogFired`] — the session actor;
//!   [`sessions::SessionCrashed`], [`sessions::RestartScheduled`],
//!   [`sessions::RestartsExhausted`], [`sessions::SessionEnded`],
//!   [`sessions::SessionRespawned`] — the supervisor, for what `Slot::on_exit` decided;
//!   [`sessions::SessionStateHeard`] — the supervisor, for a state another instance announced.
//! - [`permissions`]: what happens to a prompt — [`permissions::PromptShown`],
//!   [`permissions::PromptRestored`], [`permissions::PromptConfirmed`],
//!   [`permissions::PromptsUnconfirmed`], [`permissions::PromptAnswered`],
//!   [`permissions::AnswerDelivered`], [`permissions::PromptOverdue`],
//!   [`permissions::PromptExpired`], [`permissions::PromptCancelled`],
//!   [`permissions::PromptRecordFailed`] — decided by the pure registry core, which
//!   returns each as data ([`permissions::Happening`]); the registry actor emits it.
//! - [`diagnostics`]: what the registry core only logs — [`diagnostics::ReplayIgnored`],
//!   [`diagnostics::PromptHeld`],
//!   [`diagnostics::CancelIgnored`], [`diagnostics::AnswerResent`],
//!   [`diagnostics::AnswerResentFromLedger`], [`diagnostics::AnswerReadBackFailed`],
//!   [`diagnostics::UnknownPromptLookedUp`], [`diagnostics::LedgerLookupFailed`],
//!   [`diagnostics::AnswerWrittenAgain`], [`diagnostics::WriteRetrying`],
//!   [`diagnostics::AnswerQueued`], [`diagnostics::DryRunMatched`],
//!   [`diagnostics::DecisionRefused`], [`diagnostics::AutomaticAnswerRefused`],
//!   [`diagnostics::PolicyAnswerRefused`] — each a `Happening` too, emitted by the
//!   registry actor.
//! - [`prompts`]: [`prompts::ResolvedMemorySized`] (also a `Happening`),
//!   [`prompts::LedgerWriteRetrying`], [`prompts::LedgerWriteStillFailing`] — the
//!   registry shell, performing the core's effects.
//! - [`streams`]: [`streams::StreamReaderDropped`] — the operator event stream's reader.
//! - [`ledger`]: [`ledger::LedgerWriteFailed`] — the decision ledger, for every write
//!   that fails.
//!
//! Some events also notify (`Publish::notify`, to the `[[notify]]` sinks through
//! [`crate::notify::Notifier`]): a prompt the policy left to a human, an overdue or
//! expired prompt, a session that failed.
//!
//! Metric names, label values, log messages and fields, and bus events are part of the
//! operators' contract (dashboards, `tests/e2e/health.rs`): an event changes how they are
//! emitted, never what.

mod init;
pub mod json;

pub mod diagnostics;
pub mod frames;
pub mod ledger;
pub mod permissions;
pub mod prompts;
pub mod sessions;
pub mod streams;

pub use init::init;

use crate::events::{Event, EventBus};
use crate::notify::{Notice, Notifier};

/// Where a telemetry event's bus [`Event`] goes: the bus itself, or a session router's
/// output (which hands it to the bus, and records it in the router's tests).
pub trait Publish {
    /// Publish `event` for operators.
    fn publish(&mut self, event: Event);

    /// Offer a notification to the `[[notify]]` sinks; `build` runs only if some sink is
    /// configured. Outlets without a notifier ignore it.
    fn notify(&mut self, build: impl FnOnce() -> Notice) {
        let _ = build;
    }
}

impl Publish for &EventBus {
    fn publish(&mut self, event: Event) {
        EventBus::publish(self, event);
    }
}

/// The bus and the notifier: what the registry and the session actors emit to.
impl Publish for (&EventBus, &Notifier) {
    fn publish(&mut self, event: Event) {
        EventBus::publish(self.0, event);
    }

    fn notify(&mut self, build: impl FnOnce() -> Notice) {
        self.1.offer(build);
    }
}

#[cfg(test)]
mod tests;
