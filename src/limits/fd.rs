//! Open-file descriptors: raise the soft `RLIMIT_NOFILE` at start, share the
//! limit out between session sockets, operator API connections and a fixed
//! reserve, and hand out session connection slots so that sessions never take
//! the descriptors the API needs to answer (`/healthz` included).
//!
//! Without this, 10,000 sessions under a 1,024-descriptor limit took every
//! descriptor, retried forever on `EMFILE`, and the API could not accept a
//! single connection.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept for what is neither a session socket nor an API
/// connection, besides [`FDS_PER_THREAD`] for each runtime thread: stdio, the
/// listeners, the ledger's files, signal pipes, token commands' pipes and name
/// lookups. With 2 API workers and 1 arbiter and no session the process holds
/// 36 descriptors in all (10 of them the ledger's); the rest is for what comes
/// and goes.
pub const RESERVED_FDS: u64 = 48;

/// Descriptors each runtime thread (API worker, session arbiter) holds: its
/// poller and wake-up descriptors (2 to 3 measured), rounded up.
pub const FDS_PER_THREAD: u64 = 4;

/// Descriptors kept besides sessions and API connections in a process with
/// `threads` runtime threads: [`RESERVED_FDS`] plus [`FDS_PER_THREAD`] each.
pub fn reserved(threads: usize) -> u64 {
    RESERVED_FDS.saturating_add(FDS_PER_THREAD.saturating_mul(threads as u64))
}

/// The API never gets fewer connections than this (unless the configuration asks for fewer).
/// With [`reserved`], what a process keeps from its sessions at most: sessions fit up to
/// the open-files limit minus `reserved(threads) + 16` (76 with 2 API workers and 1 arbiter).
pub const MIN_API_CONNECTIONS: usize = 16;

/// The open-files limit before and after raising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
    /// Why raising failed, if it did.
    pub error: Option<String>,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (what `ulimit -n` would allow).
pub fn raise_nofile() -> NofileLimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        let error = std::io::Error::last_os_error().to_string();
        return NofileLimit {
            before: 1024,
            soft: 1024,
            hard: 1024,
            error: Some(format!("getrlimit: {error}")),
        };
    }
    let before = lim.rlim_cur;
    let mut error = None;
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            error = Some(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    NofileLimit {
        before,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        error,
    }
}

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdDemand {
    /// Configured sessions.
    pub sessions: usize,
    /// Descriptors one connected session holds (2 with the embedded simulator: both ends).
    pub fds_per_session: u64,
    /// `[api] max_connections`.
    pub api_connections: usize,
    /// `[api] max_stream_subscribers`.
    pub stream_subscribers: usize,
    /// Runtime threads: API workers and session arbiters (see [`reserved`]).
    pub threads: usize,
}

/// How the open-files limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdPlan {
    /// The soft limit planned for.
    pub limit: u64,
    /// Sessions that may hold a connection (or attempt one) at once.
    pub session_slots: usize,
    /// Operator API connections at once (all workers together).
    pub api_connections: usize,
    /// Event-stream readers at once (always fewer than `api_connections`).
    pub stream_subscribers: usize,
    /// Descriptors the configuration needs: sessions, API connections and the reserve.
    pub needed: u64,
    /// Descriptors kept for the rest ([`reserved`]).
    pub reserved: u64,
}

impl FdPlan {
    /// Whether every configured session and every API connection fits.
    pub fn fits(&self) -> bool {
        self.needed <= self.limit
    }
}

/// API connections kept free of event streams, so requests (answers,
/// `/healthz`) still get a connection when the streams are at their cap.
pub fn request_headroom(api_connections: usize) -> usize {
    (api_connections / 8).clamp(8.min(api_connections / 2), 256)
}

/// Share `limit` descriptors out: the reserve first, then the API's
/// connections if the sessions still fit beside them. If they do not but every
/// session fits beside the API's floor ([`MIN_API_CONNECTIONS`]), the sessions
/// come first and the API gets the rest: a process holds sessions up to the
/// limit minus the [`reserved`] descriptors and the floor. If not even that, no share lets
/// every session connect: the API keeps at least a quarter of what is left and
/// sessions wait for a slot.
pub fn plan(limit: u64, d: &FdDemand) -> FdPlan {
    let per = d.fds_per_session.max(1);
    let reserve = reserved(d.threads);
    let available = limit.saturating_sub(reserve);
    let sessions_need = (d.sessions as u64).saturating_mul(per);
    let wanted = d.api_connections as u64;
    let floor = MIN_API_CONNECTIONS.min(d.api_connections) as u64;
    let api = if sessions_need.saturating_add(wanted) <= available {
        wanted
    } else if sessions_need.saturating_add(floor) <= available {
        available - sessions_need
    } else {
        wanted.min(available.saturating_sub(sessions_need).max(available / 4))
    };
    let api = (api as usize).max(floor as usize);
    let session_slots = available.saturating_sub(api as u64) / per;
    let streams = d
        .stream_subscribers
        .min(api.saturating_sub(request_headroom(api)));
    FdPlan {
        limit,
        session_slots: usize::try_from(session_slots).unwrap_or(usize::MAX),
        api_connections: api,
        stream_subscribers: streams,
        needed: sessions_need.saturating_add(wanted).saturating_add(reserve),
        reserved: reserve,
    }
}

/// At start: raise the limit, plan for `demand`, and log both; a clear
/// warning says what does not fit and how high the limit must go.
pub fn budget_at_start(demand: &FdDemand) -> FdPlan {
    let nofile = raise_nofile();
    if let Some(error) = &nofile.error {
        tracing::warn!(%error, soft = nofile.soft, hard = nofile.hard, "cannot raise the open-files soft limit to the hard limit");
    }
    let p = plan(nofile.soft, demand);
    tracing::info!(
        limit = nofile.soft,
        raised_from = nofile.before,
        hard = nofile.hard,
        session_slots = p.session_slots,
        api_connections = p.api_connections,
        stream_subscribers = p.stream_subscribers,
        reserved = p.reserved,
        "open-files limit (RLIMIT_NOFILE)"
    );
    if !p.fits() {
        tracing::warn!(
            "open-files limit {} is too low: {} sessions ({} descriptor(s) each), {} API \
             connections and {} reserved need {}. At most {} sessions connect at once (the \
             others wait for a free slot, which their last_error says); the API keeps {} \
             connections, {} of them for event streams. Raise the hard limit to at least {} \
             (systemd LimitNOFILE=, docker --ulimit nofile=, ulimit -Hn)",
            p.limit,
            demand.sessions,
            demand.fds_per_session,
            demand.api_connections,
            p.reserved,
            p.needed,
            p.session_slots,
            p.api_connections,
            p.stream_subscribers,
            p.needed
        );
    } else if p.stream_subscribers < demand.stream_subscribers {
        tracing::warn!(
            "event streams capped at {} (not [api] max_stream_subscribers = {}) to leave {} of \
             the {} API connections for requests",
            p.stream_subscribers,
            demand.stream_subscribers,
            p.api_connections - p.stream_subscribers,
            p.api_connections
        );
    }
    p
}

/// Session connection slots: a session holds one from before it opens its
/// socket until that connection ends; when none is free, it waits (first
/// come, first served) instead of failing on `EMFILE` and retrying.
#[derive(Clone, Debug)]
pub struct ConnSlots {
    sem: Arc<Semaphore>,
    capacity: usize,
    limit: u64,
}

/// One session's connection slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl ConnSlots {
    /// `capacity` slots, planned for an open-files limit of `limit`.
    pub fn new(capacity: usize, limit: u64) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        Self {
            sem: Arc::new(Semaphore::new(capacity)),
            capacity,
            limit,
        }
    }

    /// A slot if one is free now.
    pub fn try_take(&self) -> Option<ConnSlot> {
        self.sem.clone().try_acquire_owned().ok().map(ConnSlot)
    }

    /// Wait for a free slot (in the order of asking). `None` never happens in
    /// practice: the slots are never closed.
    pub async fn take(&self) -> Option<ConnSlot> {
        self.sem.clone().acquire_owned().await.ok().map(ConnSlot)
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.sem.available_permits().min(self.capacity)
    }

    /// All slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A session's `last_error` while it waits for a slot.
    pub fn waiting_message(&self) -> String {
        format!(
            "waiting for a free connection slot: all {} are in use (open-files limit {}, \
             the rest is kept for the operator API); raise the limit (ulimit -n, systemd \
             LimitNOFILE=) to connect more sessions at once",
            self.capacity, self.limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(sessions: usize) -> FdDemand {
        FdDemand {
            sessions,
            fds_per_session: 1,
            api_connections: 4096,
            stream_subscribers: 1024,
            threads: 3,
        }
    }

    /// The reserve of [`demand`]'s process.
    const R: usize = (RESERVED_FDS + 3 * FDS_PER_THREAD) as usize;

    #[test]
    fn a_plan_that_fits_gives_the_api_what_it_asks() {
        let p = plan(20_000, &demand(10_000));
        assert!(p.fits());
        assert_eq!(p.api_connections, 4096);
        assert_eq!(p.stream_subscribers, 1024);
        assert_eq!(p.session_slots, 20_000 - R - 4096);
        assert_eq!(p.needed, (10_000 + 4096 + R) as u64);
    }

    #[test]
    fn too_many_sessions_leave_the_api_a_quarter_and_the_reserve() {
        // The case: 10,000 sessions under `ulimit -n 1024`.
        let p = plan(1024, &demand(10_000));
        assert!(!p.fits());
        let quarter = (1024 - R) / 4;
        assert_eq!(p.api_connections, quarter);
        assert_eq!(p.session_slots, 1024 - R - quarter);
        assert!(p.stream_subscribers < p.api_connections);
        assert_eq!(
            p.stream_subscribers,
            quarter - request_headroom(quarter),
            "streams leave room for requests"
        );
        // Everything together stays inside the limit.
        let used = (p.session_slots + p.api_connections + R) as u64;
        assert!(used <= 1024, "{used}");
    }

    #[test]
    fn sessions_that_fit_beside_the_api_floor_all_get_a_slot() {
        // The join: 19,900 sessions under `ulimit -n 20000`.
        let p = plan(20_000, &demand(19_900));
        assert!(!p.fits(), "not with the API's 4096 connections");
        assert_eq!(p.session_slots, 19_900, "but every session connects");
        assert_eq!(p.api_connections, 20_000 - R - 19_900);
        assert!(p.api_connections >= MIN_API_CONNECTIONS);
        assert!(p.stream_subscribers < p.api_connections);
        // The most sessions a process holds: the limit minus the reserve and the floor.
        let most = 20_000 - R - MIN_API_CONNECTIONS;
        assert_eq!(plan(20_000, &demand(most)).session_slots, most);
        // One more and not every session can connect: the API keeps its quarter.
        let over = plan(20_000, &demand(most + 1));
        assert_eq!(over.api_connections, 4096.min((20_000 - R) / 4));
        assert!(over.session_slots < most);
    }

    #[test]
    fn the_api_gets_what_few_sessions_leave() {
        let p = plan(1024, &demand(100));
        assert_eq!(p.api_connections, 1024 - R - 100);
        assert_eq!(p.session_slots, 100);
    }

    #[test]
    fn the_embedded_simulator_costs_two_per_session() {
        let d = FdDemand {
            fds_per_session: 2,
            ..demand(1000)
        };
        let p = plan(20_000, &d);
        assert_eq!(p.session_slots, (20_000 - R - 4096) / 2);
        assert_eq!(p.needed, (2000 + 4096 + R) as u64);
    }

    #[test]
    fn a_tiny_limit_still_leaves_the_api_some_connections() {
        let p = plan(R as u64, &demand(10));
        assert_eq!(p.api_connections, MIN_API_CONNECTIONS);
        assert_eq!(p.session_slots, 0);
        assert!(p.stream_subscribers < p.api_connections);
        // A configuration that asks for fewer gets fewer.
        let small = FdDemand {
            api_connections: 4,
            stream_subscribers: 2,
            ..demand(0)
        };
        let p = plan(R as u64, &small);
        assert_eq!(p.api_connections, 4);
        assert_eq!(p.stream_subscribers, 2);
    }

    #[test]
    fn headroom_is_an_eighth_within_bounds() {
        assert_eq!(request_headroom(4096), 256);
        assert_eq!(request_headroom(800), 100);
        assert_eq!(request_headroom(32), 8);
        assert_eq!(request_headroom(4), 2);
        assert_eq!(request_headroom(0), 0);
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        let p = plan(u64::MAX, &demand(usize::MAX));
        assert!(p.session_slots > 0);
        assert_eq!(p.needed, u64::MAX);
    }

    #[tokio::test]
    async fn slots_are_held_until_dropped_and_waiters_are_served_in_order() {
        let slots = ConnSlots::new(2, 1024);
        let a = slots.try_take().expect("free");
        let _b = slots.try_take().expect("free");
        assert!(slots.try_take().is_none());
        assert_eq!(slots.in_use(), 2);
        let waiter = slots.take();
        tokio::pin!(waiter);
        assert!(futures_util::FutureExt::now_or_never(waiter.as_mut()).is_none());
        drop(a);
        assert!(waiter.await.is_some(), "the freed slot goes to the waiter");
        assert!(slots.waiting_message().contains("all 2 are in use"));
        assert!(slots.waiting_message().contains("limit 1024"));
    }
}
