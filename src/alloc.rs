//! The process allocator's tuning: mimalloc, returning freed memory to the OS quickly.
//!
//! Connecting thousands of sessions allocates ~10 KiB of handshake buffers each, freed
//! moments later. glibc kept most of that as RSS for good (the idle service looked twice
//! its live size); mimalloc's defaults purge freed pages after a second and commit a
//! whole arena up front. [`tune`] purges after 10 ms and commits arenas as used.

use std::os::raw::c_long;

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e` (the crate exports no
/// constant for it; the test below checks the number against its documented default).
const ARENA_EAGER_COMMIT: mi_option_t = 4;
/// `mi_option_purge_delay`, in milliseconds.
const PURGE_DELAY: mi_option_t = 15;

/// Milliseconds a freed page waits before it is returned to the OS.
const PURGE_DELAY_MS: c_long = 10;

/// Apply the tuning; call first thing in `main`. `MIMALLOC_*` env variables still win
/// where set before start, as mimalloc documents.
pub fn tune() {
    let overridden = |name: &str| std::env::var_os(name).is_some();
    // SAFETY: plain setters of global integers inside mimalloc; any value is accepted.
    unsafe {
        if !overridden("MIMALLOC_ARENA_EAGER_COMMIT") {
            mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
        if !overridden("MIMALLOC_PURGE_DELAY") {
            mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    #[test]
    fn the_option_numbers_are_mimallocs() {
        // The test binary never calls `tune`, so these are mimalloc 3's defaults:
        // 2 ("eager on overcommitting systems") and 1000 ms. A renumbered enum fails here.
        unsafe {
            assert_eq!(mi_option_get(ARENA_EAGER_COMMIT), 2);
            assert_eq!(mi_option_get(PURGE_DELAY), 1000);
        }
    }
}
