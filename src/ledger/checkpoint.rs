//! WAL checkpoints off the answer path: a background thread copies the WAL into the
//! database (with its two fsyncs) while the writer keeps committing; the writer only
//! finishes each cycle with the few frames committed since, so the WAL can restart.
//! (The writer is the ledger's applier thread, SQLite's only writing connection.)
//!
//! Why two threads: SQLite restarts the WAL only when a write transaction begins with
//! every frame already copied. A checkpoint on another connection never gets there
//! under steady load (frames keep arriving while it runs), and one on the writer's
//! connection stalls every queued answer for both fsyncs of a whole WAL's worth of
//! pages. Splitting the work keeps the WAL bounded and the writer's share small.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tracing::{debug, warn};

/// WAL size, in frames, at which the writer's own connection checkpoints anyway: the
/// safety net if the background thread falls behind or fails (about 64 MiB of 4 KiB pages).
pub(crate) const WRITER_FALLBACK_FRAMES: u32 = 16_384;

/// Background passes that try to catch up with the writer before it is asked to finish.
const CATCH_UP_PASSES: usize = 3;

/// Frames left over that the writer may finish cheaply.
const SMALL_RESIDUE: u32 = 256;

/// When the background thread checkpoints and when it hands the cycle to the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// How often the background thread copies new frames.
    pub every: Duration,
    /// WAL size, in frames, at which the writer is asked to finish the cycle.
    pub restart_at: u32,
}

/// What one checkpoint call reported: frames in the WAL and frames copied into the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub log: u32,
    pub copied: u32,
}

impl Progress {
    fn left(self) -> u32 {
        self.log.saturating_sub(self.copied)
    }
}

/// Copy as many WAL frames as readers and writers allow, without waiting for either.
pub(crate) fn passive(conn: &Connection) -> rusqlite::Result<Progress> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        let log: i64 = r.get(1)?;
        let copied: i64 = r.get(2)?;
        // -1 when the database is not in WAL mode; treated as empty.
        Ok(Progress {
            log: u32::try_from(log).unwrap_or(0),
            copied: u32::try_from(copied).unwrap_or(0),
        })
    })
}

/// One background round: copy new frames; once the WAL has reached `restart_at`, catch up
/// as far as a few passes get and, if frames are still left, flush both files and return
/// true, meaning "writer, finish this cycle".
///
/// SQLite syncs the database only when a pass copies the very last frame, which under load
/// is the writer's pass; `files` are synced here first so that fsync finds little to write.
pub(crate) fn background_round(
    conn: &Connection,
    policy: Policy,
    files: &[PathBuf],
) -> rusqlite::Result<bool> {
    let mut p = passive(conn)?;
    if p.log < policy.restart_at {
        return Ok(false);
    }
    for _ in 1..CATCH_UP_PASSES {
        if p.left() <= SMALL_RESIDUE {
            break;
        }
        p = passive(conn)?;
    }
    if p.left() == 0 {
        // All copied, and SQLite synced the database itself: the next write restarts the
        // WAL with no help (this is also every round while the writer is idle).
        return Ok(false);
    }
    for path in files {
        // fsync through any descriptor flushes the file; a missing WAL has nothing to flush.
        if let Err(e) = File::open(path).and_then(|f| f.sync_data()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(error = %e, file = %path.display(), "decision ledger pre-checkpoint sync failed");
            }
        }
    }
    Ok(true)
}

/// Shared between the checkpointer and the writer.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    finish: AtomicBool,
}

impl Handoff {
    /// The writer, between batches: finish a cycle the background thread asked for.
    pub(crate) fn finish_if_asked(&self, conn: &Connection) {
        if !self.finish.swap(false, Ordering::AcqRel) {
            return;
        }
        match passive(conn) {
            Ok(p) => debug!(
                frames = p.log,
                left = p.left(),
                "decision ledger WAL cycle finished"
            ),
            Err(e) => warn!(error = %e, "decision ledger checkpoint failed; retried next cycle"),
        }
    }
}

/// The checkpointer thread's body; returns when `stop`'s sender (held by the writer) is gone.
pub(crate) fn run(
    conn: Connection,
    db: &Path,
    policy: Policy,
    handoff: Arc<Handoff>,
    stop: Receiver<()>,
) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let files = [db.to_path_buf(), PathBuf::from(wal)];
    // Nothing is ever sent: the channel only closes, when the writer stops.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(policy.every) {
        match background_round(&conn, policy, &files) {
            Ok(true) => handoff.finish.store(true, Ordering::Release),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "decision ledger background checkpoint failed"),
        }
    }
    debug!("decision ledger checkpointer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    use crate::ledger::schema;

    /// The ledger's own writer connection, with a scratch table and no auto-checkpoint.
    fn writer(path: &std::path::Path) -> Connection {
        let conn = schema::open_writer(path).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT NOT NULL)")
            .unwrap();
        conn
    }

    fn background(path: &std::path::Path) -> Connection {
        schema::open_checkpointer(path).unwrap()
    }

    fn insert(conn: &Connection, from: i64, n: i64) {
        for i in from..from + n {
            conn.execute(
                "INSERT INTO t (v) VALUES (?1)",
                params![format!("{i:0>600}")],
            )
            .unwrap();
        }
    }

    #[test]
    fn the_writer_only_finishes_a_cycle_and_the_wal_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let writer = writer(&path);
        let background = background(&path);
        let policy = Policy {
            every: Duration::from_millis(1),
            restart_at: 50,
        };

        insert(&writer, 0, 20);
        assert!(
            !background_round(&background, policy, std::slice::from_ref(&path)).unwrap(),
            "below restart_at"
        );
        // A reader's snapshot stands in for the writer committing during the background
        // pass: the frames after it cannot be copied yet.
        insert(&writer, 20, 80);
        let reader = schema::open_reader(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        insert(&writer, 100, 20);
        assert!(background_round(&background, policy, std::slice::from_ref(&path)).unwrap());
        reader.execute_batch("COMMIT").unwrap();
        // (Had the reader not held those frames back, there would be nothing to hand over.)

        // Frames left uncopied keep the WAL growing...
        let wal = dir.path().join("l.db-wal");
        let wal_len = || std::fs::metadata(&wal).unwrap().len();
        let grown = wal_len();
        insert(&writer, 120, 5);
        assert!(wal_len() > grown, "no restart while frames are left");
        // ...until the writer copies them itself, when asked (and only then).
        let handoff = Handoff::default();
        handoff.finish_if_asked(&writer);
        let grown = wal_len();
        insert(&writer, 125, 5);
        assert!(wal_len() > grown, "not asked: nothing copied");
        let full = wal_len();
        handoff.finish.store(true, Ordering::Release);
        handoff.finish_if_asked(&writer);
        assert!(!handoff.finish.load(Ordering::Acquire));
        // The next write starts the WAL over instead of appending to it.
        insert(&writer, 130, 2);
        assert_eq!(wal_len(), full, "WAL restarted from its start");
        let restarted = passive(&background).unwrap();
        assert!(restarted.log < 10, "{restarted:?}");
        let rows: i64 = background
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 132);
    }

    #[test]
    fn a_round_that_copies_everything_hands_nothing_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let writer = writer(&path);
        insert(&writer, 0, 100);
        let background = background(&path);
        let policy = Policy {
            every: Duration::from_millis(1),
            restart_at: 50,
        };
        assert!(!background_round(&background, policy, std::slice::from_ref(&path)).unwrap());
        let p = passive(&background).unwrap();
        assert!(
            p.log >= 50 && p.left() == 0,
            "past restart_at, all copied: {p:?}"
        );
    }

    #[test]
    fn the_thread_stops_with_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let _writer = writer(&path);
        let conn = background(&path);
        let (tx, rx) = std::sync::mpsc::channel();
        let policy = Policy {
            every: Duration::from_secs(3600),
            restart_at: 1,
        };
        let t = std::thread::spawn(move || run(conn, &path, policy, Arc::default(), rx));
        drop(tx);
        t.join().unwrap();
    }
}
