//! `ccr-supervisor ledger backup`: an online, consistent copy of the ledger in one file,
//! taken while the service runs (it reads only, and takes no instance lock).
//!
//! The journal segments are copied first, then the database through SQLite's online
//! backup (one read snapshot), then the copied journal's records the snapshot lacks are
//! applied to the copy, exactly as a start replays them. Segments are deleted only once
//! applied, and the applied mark is committed with the rows, so every write acknowledged
//! before the copy began is in it: the snapshot has every record up to its mark, and the
//! segments copied earlier hold every record after any mark the snapshot can have.
//! The copy is built under a temporary name beside `dest` and renamed into place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use super::journal;
use super::schema;
use super::writer::Counters;

/// How often a step refused because the database is locked is tried again, and how long
/// apart: a lock is held for one transaction, milliseconds.
const BUSY_RETRIES: u32 = 100;
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Rows (prompts) in the copy.
    pub prompts: u64,
    /// Journal segments copied and applied to it (writes the database did not have yet).
    pub journal_segments: usize,
    /// Size of the copy in bytes.
    pub bytes: u64,
}

/// Why a backup was not made. The destination is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// `dest` exists and overwriting was not asked for.
    #[error("{} exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// `dest` is the ledger itself.
    #[error("{} is the ledger itself; back it up to another path", .0.display())]
    SameFile(PathBuf),
    /// There is no ledger at the source path.
    #[error("no ledger at {}", .0.display())]
    NoLedger(PathBuf),
    /// Reading the ledger or writing the copy failed.
    #[error("{what}: {reason}")]
    Failed {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

fn failed(what: impl Into<String>, reason: impl std::fmt::Display) -> BackupError {
    BackupError::Failed {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Copy the ledger database `db` and its journal into the single file `dest`, consistent
/// and complete up to the moment the copy began; `overwrite` replaces an existing `dest`.
/// Blocking. Safe while the service runs on `db`.
pub fn backup(db: &Path, dest: &Path, overwrite: bool) -> Result<BackupReport, BackupError> {
    if !db.is_file() {
        return Err(BackupError::NoLedger(db.to_path_buf()));
    }
    if same_file(db, dest) {
        return Err(BackupError::SameFile(dest.to_path_buf()));
    }
    if dest.exists() && !overwrite {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    if dest.is_dir() {
        return Err(failed(
            format!("cannot replace {}", dest.display()),
            "is a directory",
        ));
    }
    let temp = temp_path(dest);
    remove_db_files(&temp);
    let made = copy_into(db, &temp);
    let report = match made {
        Ok(report) => report,
        Err(e) => {
            remove_db_files(&temp);
            return Err(e);
        }
    };
    if overwrite {
        // A WAL left beside an older copy would be replayed into the new one when opened.
        for sidecar in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(dest, sidecar));
        }
    }
    std::fs::rename(&temp, dest).map_err(|e| {
        remove_db_files(&temp);
        failed(format!("cannot move the copy to {}", dest.display()), e)
    })?;
    if let Ok(dir) = std::fs::File::open(parent_dir(dest)) {
        let _ = dir.sync_all();
    }
    Ok(report)
}

/// Build the copy at `temp`: journal segments, the online backup, the replay, a check.
fn copy_into(db: &Path, temp: &Path) -> Result<BackupReport, BackupError> {
    // Segments first: see the module doc for why this order loses nothing.
    let segments = journal::segments(db).map_err(|e| failed("cannot list the journal", e))?;
    let mut copied = 0;
    for (first, segment) in &segments {
        match std::fs::copy(segment, journal::segment_path(temp, *first)) {
            Ok(_) => copied += 1,
            // Applied and deleted meanwhile: the snapshot taken next has its records.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(format!("cannot copy {}", segment.display()), e)),
        }
    }
    let source = schema::open_reader(db).map_err(|e| failed("cannot open the ledger", e))?;
    let mut copy = Connection::open(temp)
        .map_err(|e| failed(format!("cannot create {}", temp.display()), e))?;
    {
        let backup = Backup::new(&source, &mut copy).map_err(|e| failed("backup", e))?;
        // All pages in one step: one read snapshot, so the copy is consistent; the
        // service's writer is not blocked by it (WAL).
        let mut busy = 0;
        loop {
            match backup.step(-1).map_err(|e| failed("backup", e))? {
                StepResult::Done => break,
                // Another connection holds a lock SQLite's busy handler did not wait out.
                StepResult::Busy | StepResult::Locked if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                other => return Err(failed("backup", format!("stopped: {other:?}"))),
            }
        }
    }
    drop(source);
    journal::replay(&mut copy, temp, &Counters::default())
        .map_err(|e| failed("cannot apply the copied journal to the copy", e))?;
    let check: String = copy
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| failed("cannot check the copy", e))?;
    if check != "ok" {
        return Err(failed("the copy failed its integrity check", check));
    }
    let prompts: i64 = copy
        .query_row("SELECT count(*) FROM prompts", [], |r| r.get(0))
        .map_err(|e| failed("cannot count the copy's rows", e))?;
    // A plain rollback-journal file: one file that any reader opens without creating
    // WAL files beside it (the service switches it back to WAL when it opens it).
    let mode: String = copy
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(|e| failed("cannot fold the copy's WAL into it", e))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(failed(
            "cannot fold the copy's WAL into it",
            format!("journal_mode is {mode}"),
        ));
    }
    copy.close()
        .map_err(|(_, e)| failed(format!("cannot close {}", temp.display()), e))?;
    let file = std::fs::File::open(temp).map_err(|e| failed("cannot reopen the copy", e))?;
    file.sync_all()
        .map_err(|e| failed("cannot sync the copy to disk", e))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        prompts: u64::try_from(prompts).unwrap_or(0),
        journal_segments: copied,
        bytes,
    })
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `path` with `suffix` appended to its file name (`x.db` + `-wal` = `x.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where the copy is built: a hidden name beside `dest`, unique to this process.
fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    parent_dir(dest).join(format!(".{name}.partial-{}", std::process::id()))
}

/// Remove a (partial) database at `path`: the file, its WAL files and journal segments.
fn remove_db_files(path: &Path) {
    for sidecar in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(with_suffix(path, sidecar));
    }
    for (_, segment) in journal::segments(path).unwrap_or_default() {
        let _ = std::fs::remove_file(segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_beside_the_destination() {
        assert_eq!(
            temp_path(Path::new("/b/ledger.db")),
            PathBuf::from(format!("/b/.ledger.db.partial-{}", std::process::id()))
        );
        assert_eq!(parent_dir(Path::new("x.db")), Path::new("."));
        assert_eq!(
            with_suffix(Path::new("/b/x.db"), "-wal"),
            Path::new("/b/x.db-wal")
        );
    }
}
