//! Session ownership by leases (issue #29), not wired into the service yet: each
//! configured session is owned by one live instance at a time, through a lease row in
//! PostgreSQL that its owner renews and that fences every write it makes by epoch.
//!
//! - [`plan`]: which sessions to claim, hand over or give up each round (pure).
//! - [`store`]: the SQL of members and leases, and the fence that makes a write count
//!   only while its lease is held; the database clock decides every expiry.

pub mod plan;
pub mod store;
