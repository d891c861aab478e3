//! What the console shows of a prompt, decided without HTML (pure). The definitions live in
//! `ccr_protocol::present`, shared with `ctl show`, so the page and the terminal agree.

pub use ccr_protocol::present::*;
