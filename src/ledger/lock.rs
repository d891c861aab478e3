//! The instance lock: one process at a time may open a ledger (its database and journal).
//!
//! A lock file beside the database, `<path>.lock`, is held with an exclusive OS advisory
//! lock (`flock`) for as long as the ledger is open; the holder writes its pid into it so
//! a second instance can name it. The kernel releases the lock when the holder dies, so a
//! lock file left by a crash never blocks: only its pid text remains, and the next holder
//! overwrites it. A process that finds the lock held has written nothing (it opens the
//! lock file without truncating it, and only the holder ever writes to it).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::record::LedgerError;

/// An exclusive hold on a ledger, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    /// Kept open: the lock lives as long as this descriptor.
    _file: File,
}

impl InstanceLock {
    /// Take the lock of the ledger database `db`, creating `<db>.lock` (and the
    /// directories above it) if needed. Fails at once, without waiting, with
    /// [`LedgerError::InUse`] when another process (or another open ledger of this
    /// process) holds it.
    pub fn acquire(db: &Path) -> Result<InstanceLock, LedgerError> {
        let path = lock_path(db);
        let fail = |reason: String| LedgerError::Open {
            path: db.to_path_buf(),
            reason,
        };
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create directory {}: {e}", parent.display())))?;
        }
        if db.is_dir() {
            return Err(fail("is a directory".into()));
        }
        // No truncation here: the file may be someone else's, naming its holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| fail(format!("cannot open lock file {}: {e}", path.display())))?;
        match try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LedgerError::InUse {
                    path: db.to_path_buf(),
                    lock: path,
                    pid: parse_pid(&text),
                });
            }
            Err(e) => {
                return Err(fail(format!("cannot lock {}: {e}", path.display())));
            }
        }
        // Ours now: replace whatever pid a dead holder left.
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
        };
        write_pid(&mut file)
            .map_err(|e| fail(format!("cannot write lock file {}: {e}", path.display())))?;
        Ok(InstanceLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take an exclusive `flock` on `file` without waiting: `Ok(false)` when another open
/// file description holds it. (`File::try_lock` does this from Rust 1.89, above the MSRV.)
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock(2) on a descriptor `file` owns and keeps open; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// The lock file of the ledger database `db`: `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The pid a lock file names, if it holds one (it is empty for the instant between a
/// holder taking the lock and writing it).
fn parse_pid(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(
            lock_path(Path::new("./data/ledger.db")),
            Path::new("./data/ledger.db.lock")
        );
    }

    #[test]
    fn pids_are_read_leniently() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("garbage"), None);
    }

    #[test]
    fn a_second_holder_is_refused_naming_the_first_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("ledger.db");
        let first = InstanceLock::acquire(&db).unwrap();
        assert_eq!(first.path(), lock_path(&db));
        let before = std::fs::read(first.path()).unwrap();
        assert_eq!(before, format!("{}\n", std::process::id()).as_bytes());
        let err = InstanceLock::acquire(&db).unwrap_err();
        match &err {
            LedgerError::InUse { path, lock, pid } => {
                assert_eq!(path, &db);
                assert_eq!(lock, &lock_path(&db));
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&db.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert_eq!(std::fs::read(first.path()).unwrap(), before);
        drop(first);
        // Released: the next one takes it.
        InstanceLock::acquire(&db).unwrap();
    }

    #[test]
    fn a_stale_lock_file_without_a_holder_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        std::fs::write(lock_path(&db), "4194303 and some leftover text\n").unwrap();
        let lock = InstanceLock::acquire(&db).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}
