//! Serde wire types only: CCR frames in both directions and operator API bodies.
//!
//! Nothing here knows about actors or sockets; everything is a plain function or
//! type so that it can be unit-tested and reused by the simulator.

pub mod api;
pub mod frame;
pub mod outbound;
pub mod scan;

pub use frame::{
    classify, unreadable, ControlResponse, FrameError, Inbound, PendingLists, PermissionPrompt,
    PromptKind, SdkMessage, Unreadable,
};
pub use outbound::{
    error_response, initialize_request, interrupt_request, permission_response, question_response,
    user_message_events, PermissionResult,
};

#[cfg(test)]
mod tests_fuzz;
