//! The chaos test (`ccr-supervisor chaos`): proof, in the project, that no prompt is lost,
//! answered twice, or answered after it was withdrawn, whatever the network
//! and the process do.
//!
//! A run starts the CCR simulator as a fault-injecting peer ([`peer`]: many
//! sessions emitting `can_use_tool` prompts with random ids, withdrawing some,
//! dropping, resetting and closing connections, refusing them with 4001 for a
//! while, sending garbage and reading slowly; the simulator replays every
//! unanswered prompt on each new connection and keeps the wire log), the real
//! `ccr-supervisor` binary as a child process with a ledger that survives its
//! `kill -9` restarts ([`process`]), and two random operators answering over
//! the HTTP API ([`operator`]). With `--instances N` the supervisor is a cluster
//! of N processes sharing the sessions by leases on a throwaway PostgreSQL
//! ([`cluster`]): an instance is killed, frozen past its lease or stopped and
//! restarted, operators answer through any of them, and the ledger is read from
//! the database. After a drain, [`check`] compares every prompt, answer, API
//! response and ledger row, and [`report`] prints figures and a timeline per
//! broken invariant.
//!
//! One seed drives all randomness: every decision point (a session at a peer
//! tick, an operator looking at a prompt for the n-th time, the n-th kill)
//! draws from its own generator derived from the seed and that point's name
//! ([`rng_for`]), so `CHAOS_SEED=<n>` / `--seed <n>` makes the same sessions
//! emit the same prompts (same ids) and suffer the same faults at the same
//! ticks, and the operators treat each prompt the same way. Timing is not
//! replayed: what a fault hits (an answer in flight or not) and when a kill
//! lands depend on the machine, so a failing sequence may need a few runs with
//! its seed to recur.

#![warn(missing_docs)]

pub mod check;
mod cli;
pub mod cluster;
mod keeper;
pub mod operator;
pub mod peer;
pub mod process;
pub mod records;
pub mod report;
mod run;
pub mod verdict;

pub use cli::{main, ChaosArgs, Preset};
pub use run::{rng_for, run, seed_from_env, ChaosOptions, ChaosOutcome, ClusterFaults};
