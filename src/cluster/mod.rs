//! Session ownership by leases (issue #29), not wired into the service yet: each
//! configured session is owned by one live instance at a time, through a lease row in
//! PostgreSQL that its owner renews and that fences every write it makes by epoch.
//!
//! - [`plan`]: which sessions to claim, hand over or give up each round (pure).

pub mod plan;
