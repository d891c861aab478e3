//! Resource bounds that keep the process answering under overload: the
//! open-files budget and session connection slots (`fd`), caps on event-stream
//! readers (`streams`), and a rate limiter for repeated log lines (`repeat`).
//!
//! The logic is pure and unit-tested; callers (the app factory, the session
//! actor, the event-stream route) only hold the handles.

pub mod fd;
pub mod repeat;
pub mod streams;
