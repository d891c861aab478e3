//! Every wire shape of ccr-supervisor, as plain serde types and pure functions.
//!
//! Nothing here knows about actors, sockets or async runtimes (no actix, no tokio), so the
//! service, the simulator, the operator client and the benchmarks share one definition.
//!
//! - [`frame`]: inbound CCR frames and their classification.
//! - [`scan`]: the constant-memory head scan of frames too large or too deep to parse.
//! - [`outbound`]: the exact answers and requests the supervisor sends to a session.
//! - [`api`]: operator API request bodies (answers, messages).
//! - [`policy`]: a rule's action, the policy's verdict and evaluation, the rules as shown.
//! - [`reply`]: operator API response bodies (sessions, prompts, receipts, ledger pages).
//! - [`event`]: the events the supervisor publishes (live stream, history, transcripts).
//! - [`session`]: a session's observable state and counters.
//! - [`error`]: the API's error codes with their HTTP status, and the error body.
//! - [`sse`]: a Server-Sent Events parser.
//! - [`metrics`]: reading the `/metrics` text by series.
//! - [`time`]: RFC 3339 timestamps on the wire.
//! - [`sanitize`]: session-written text made safe for a terminal (and the console).
//! - [`present`]: how a prompt is shown to a person (summary, diff, flags), for the console and `ctl`.
//! - `fuzz` (feature `fuzz`): input strategies for property-based tests.

#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod event;
pub mod frame;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod present;
pub mod reply;
pub mod sanitize;
pub mod scan;
pub mod session;
pub mod sse;
pub mod time;

#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;

pub use frame::{
    classify, unreadable, ControlResponse, FrameError, Inbound, PendingLists, PermissionPrompt,
    PromptKind, RawRequest, SdkMessage, Unreadable,
};
pub use outbound::{
    error_response, initialize_request, interrupt_request, permission_response,
    permission_response_as_asked, question_response, user_message_events, PermissionResult,
};

#[cfg(test)]
mod tests;
