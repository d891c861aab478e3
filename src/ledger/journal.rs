//! The append-only journal ahead of SQLite. A write is durable once its record is in the
//! journal: it survives a process crash (the kernel holds it), exactly as a
//! `synchronous=NORMAL` commit does, so callers never wait for a SQLite transaction. The
//! applier thread copies records into the database behind them, noting the last one
//! applied in the same transaction; [`replay`] finishes that copy at the next start.
//!
//! Segment files sit next to the database, `<db>.journal.<first seq, 20 digits>`, each a
//! run of records: `len: u32 LE | crc32(seq ‖ payload): u32 LE | seq: u64 LE | payload`,
//! the payload being one [`Write`]: the byte [`POSTCARD`] then its postcard encoding (the
//! JSON it carries is copied, not escaped again). Payloads written by older builds are the
//! JSON of the write, and still read. A crash in the middle of an append leaves a torn
//! last record, which replay reports and drops (it was never acknowledged).
//!
//! An append is a copy into a shared mapping of the segment (a 1 MiB window, moved along
//! as the segment grows), not a `write` syscall: the copied bytes are in the kernel's page
//! cache at once, so a process crash keeps them exactly as a `write` would. Space is
//! reserved ahead with `fallocate` in 1 MiB steps, so a full disk is an error of the
//! append that needs the space (never a `SIGBUS` on a copy); the reserved space past the
//! last record reads as zeros, the clean end of a segment. A file system without
//! `fallocate` gets plain positioned writes instead.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

use rusqlite::Connection;
use tracing::{info, warn};

use super::record::LedgerError;
use super::sql;
use super::writer::{Counters, Write};

/// Bytes before a record's payload: length, checksum, sequence number.
const HEADER: usize = 16;

/// Largest payload accepted when reading (a prompt is capped far below this upstream).
const MAX_PAYLOAD: usize = 64 << 20;

/// Records applied per transaction during replay.
const REPLAY_BATCH: usize = 1024;

/// Space reserved ahead in a segment (`fallocate`), and the size of the mapped window
/// appends are copied into. A window is unmapped when the next one is mapped, which keeps
/// the journal's resident pages to about this much.
const STEP: u64 = 1 << 20;

/// First payload byte of a postcard-encoded write. Postcard is not self-describing: any
/// change to the shape of [`Write`] or of the types in it, other than a new variant at the
/// end of an enum, needs a new format byte, with records under this one still decoded.
const POSTCARD: u8 = 1;

/// First payload byte of a write journaled as JSON (before postcard).
const LEGACY_JSON: u8 = b'{';

/// Append one record for `write` to `out`.
pub(crate) fn encode(seq: u64, write: &Write, out: &mut Vec<u8>) -> Result<(), LedgerError> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(POSTCARD);
    if let Err(e) = postcard::to_io(write, &mut *out) {
        out.truncate(start);
        return Err(LedgerError::Storage(format!(
            "cannot encode journal record: {e}"
        )));
    }
    let Ok(len) = u32::try_from(out.len() - start - HEADER) else {
        out.truncate(start);
        return Err(LedgerError::Storage("journal record over 4 GiB".into()));
    };
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What [`decode`] could not read at the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadTail {
    /// Offset of the first unreadable byte.
    pub offset: usize,
    /// Bytes from there to the end.
    pub bytes: usize,
    /// Why: a torn record (cut short), a checksum mismatch or an undecodable payload.
    pub reason: &'static str,
}

/// The records of one segment, in order, up to the first that cannot be read.
pub(crate) fn decode(buf: &[u8]) -> (Vec<(u64, Write)>, Option<BadTail>) {
    let (records, _, bad) = read(buf);
    (records, bad)
}

/// Where the readable records of a segment end: before the space reserved past them, or
/// before the first record [`decode`] cannot read (never acknowledged, so it may be
/// written over).
fn records_end(buf: &[u8]) -> usize {
    read(buf).1
}

/// [`decode`], and the offset where the readable records end.
fn read(buf: &[u8]) -> (Vec<(u64, Write)>, usize, Option<BadTail>) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let bad = |reason| BadTail {
            offset: at,
            bytes: buf.len() - at,
            reason,
        };
        if buf[at] == 0 && buf[at..].iter().all(|&b| b == 0) {
            // Space reserved past the last record: the clean end of the segment.
            break;
        }
        let Some(header) = buf.get(at..at + HEADER) else {
            return (records, at, Some(bad("torn record")));
        };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if len > MAX_PAYLOAD {
            return (records, at, Some(bad("impossible record length")));
        }
        let Some(payload) = buf.get(at + HEADER..at + HEADER + len) else {
            return (records, at, Some(bad("torn record")));
        };
        if crc32fast::hash(&buf[at + 8..at + HEADER + len]) != crc {
            return (records, at, Some(bad("checksum mismatch")));
        }
        match payload_write(payload) {
            Some(write) => records.push((seq, write)),
            None => return (records, at, Some(bad("undecodable record"))),
        }
        at += HEADER + len;
    }
    (records, at, None)
}

/// The write a record's payload holds, in either encoding; `None` when it holds none.
fn payload_write(payload: &[u8]) -> Option<Write> {
    match payload.split_first() {
        Some((&POSTCARD, rest)) => match postcard::take_from_bytes(rest) {
            Ok((write, [])) => Some(write),
            _ => None,
        },
        Some((&LEGACY_JSON, _)) => serde_json::from_slice(payload).ok(),
        _ => None,
    }
}

/// The segment file of `db` whose first record is `first_seq`.
pub(crate) fn segment_path(db: &Path, first_seq: u64) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".journal.{first_seq:020}"));
    db.with_file_name(name)
}

/// Every segment of `db`, oldest first.
pub(crate) fn segments(db: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match db.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!(
        "{}.journal.",
        db.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Apply every journal record of `db` that the database does not have yet, then delete
/// the segments. Returns the next sequence number to use. Blocking; runs before the
/// applier starts.
pub(crate) fn replay(
    conn: &mut Connection,
    db: &Path,
    counters: &Counters,
) -> Result<u64, LedgerError> {
    let storage = |what: &str, e: &dyn std::fmt::Display| {
        LedgerError::Storage(format!("journal replay: {what}: {e}"))
    };
    let applied = sql::applied_seq(conn).map_err(|e| storage("reading the applied mark", &e))?;
    let mut last = applied;
    let mut replayed = 0usize;
    let segments = segments(db).map_err(|e| storage("listing segments", &e))?;
    for (_, path) in &segments {
        let buf = std::fs::read(path).map_err(|e| storage(&path.display().to_string(), &e))?;
        let (records, bad) = decode(&buf);
        if let Some(bad) = bad {
            warn!(
                segment = %path.display(), offset = bad.offset, bytes = bad.bytes, reason = bad.reason,
                "decision ledger journal: dropped an unreadable tail (a write cut short by a crash was never acknowledged)"
            );
        }
        let fresh: Vec<(u64, &Write)> = records
            .iter()
            .filter(|(seq, _)| *seq > applied)
            .map(|(seq, w)| (*seq, w))
            .collect();
        for chunk in fresh.chunks(REPLAY_BATCH) {
            let results = sql::commit(conn, chunk).map_err(|e| storage("applying", &e))?;
            for ((_, w), result) in chunk.iter().zip(results) {
                if let Err(e) = result {
                    counters.write_failed(w.name(), &e);
                }
            }
        }
        replayed += fresh.len();
        last = records.iter().map(|(s, _)| *s).fold(last, u64::max);
    }
    for (_, path) in &segments {
        std::fs::remove_file(path).map_err(|e| storage(&path.display().to_string(), &e))?;
    }
    if replayed > 0 {
        info!(
            records = replayed,
            "decision ledger: applied journal records left by the last run"
        );
    }
    Ok(last + 1)
}

/// The open journal: the segment being appended to and the full ones not yet applied.
pub(crate) struct Journal {
    db: PathBuf,
    file: File,
    path: PathBuf,
    /// Bytes of records in the current segment.
    len: u64,
    /// Bytes reserved in the current segment (its size; zeros past `len`).
    reserved: u64,
    /// The mapped part of the current segment; `None` before the first append, after a
    /// rotation, and always where the file system cannot reserve space.
    window: Option<Window>,
    /// Whether appends go through mappings (false once `fallocate` was refused).
    mapped: bool,
    /// Last sequence number appended to the current segment (0: none yet).
    last: u64,
    /// Full segments not yet handed on by [`Journal::take_full`], oldest first.
    full: Vec<PathBuf>,
    /// Size at which the next append starts a new segment.
    segment_bytes: u64,
}

/// A shared, writable mapping of `map.len()` bytes of the segment from offset `start`.
struct Window {
    start: u64,
    map: MmapMut,
}

impl Journal {
    /// Start a fresh segment for records from `next_seq` on.
    pub(crate) fn create(db: &Path, next_seq: u64, segment_bytes: u64) -> io::Result<Journal> {
        let path = segment_path(db, next_seq);
        let file = open_segment(&path)?;
        let reserved = file.metadata()?.len();
        // Normally a new file. One left by an earlier run keeps its records: appends go
        // after them, not after the space it had reserved (zeros would end the segment).
        let len = match reserved {
            0 => 0,
            _ => records_end(&std::fs::read(&path)?) as u64,
        };
        Ok(Journal {
            db: db.to_path_buf(),
            file,
            path,
            len,
            reserved,
            window: None,
            mapped: true,
            last: 0,
            full: Vec::new(),
            segment_bytes: segment_bytes.max(1),
        })
    }

    /// Append `record` (encoded, sequence number `seq`). On error nothing of it is in the
    /// segment: a failed append leaves no record behind.
    pub(crate) fn append(&mut self, record: &[u8], seq: u64) -> io::Result<()> {
        if self.len >= self.segment_bytes {
            self.rotate(seq)?;
        }
        let end = self.len + record.len() as u64;
        if self.mapped {
            self.reserve(end)?;
        }
        if self.mapped {
            let len = self.len;
            let window = self.window_for(end)?;
            let at = (len - window.start) as usize;
            window.map[at..at + record.len()].copy_from_slice(record);
        } else if let Err(e) = self.file.write_all_at(record, self.len) {
            if self.file.set_len(self.len).is_err() {
                // Cannot cut the torn bytes off: leave them as this segment's (reported) tail.
                let _ = self.rotate(seq);
            }
            return Err(e);
        }
        self.len = end;
        self.last = seq;
        Ok(())
    }

    /// Make the segment at least `end` bytes long: a [`STEP`] ahead, or, when the disk has
    /// not that much left, just what `end` needs. A file system that cannot reserve space
    /// switches the journal to positioned writes.
    fn reserve(&mut self, end: u64) -> io::Result<()> {
        if end <= self.reserved {
            return Ok(());
        }
        let page = page_size();
        let mut result = Ok(());
        for to in [end.div_ceil(STEP) * STEP, end.div_ceil(page) * page] {
            result = fallocate(&self.file, self.reserved, to - self.reserved);
            match &result {
                Ok(()) => {
                    self.reserved = to;
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => continue,
                Err(_) => break,
            }
        }
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                warn!(segment = %self.path.display(), "the file system cannot reserve space (fallocate): the decision ledger journal uses plain writes");
                self.mapped = false;
                self.window = None;
                Ok(())
            }
            other => other,
        }
    }

    /// The window that holds `[len, end)`, mapping a new one when the current one does not.
    fn window_for(&mut self, end: u64) -> io::Result<&mut Window> {
        let fits = |w: &Window| self.len >= w.start && end <= w.start + w.map.len() as u64;
        if !self.window.as_ref().is_some_and(fits) {
            // Unmapped first: its pages leave this process's memory (they stay in the file).
            self.window = None;
            let page = page_size();
            let start = self.len / page * page;
            let size = (end - start).div_ceil(STEP).max(1) * STEP;
            // SAFETY: the mapping is shared and only this journal writes the file while it
            // is open (the instance lock keeps other processes out); nothing past the
            // reserved size is touched, so no access can fault on a missing page.
            let map = unsafe {
                MmapOptions::new()
                    .offset(start)
                    .len(size as usize)
                    .map_mut(&self.file)?
            };
            self.window = Some(Window { start, map });
        }
        Ok(self.window.as_mut().expect("mapped just above"))
    }

    /// The segments filled since the last call, oldest first. Each may be deleted once
    /// every record appended before it was taken is in the database; the applier does
    /// that, because unlinking a large file takes milliseconds (its cached pages are
    /// dropped), too long for the thread that answers prompts.
    pub(crate) fn take_full(&mut self) -> std::vec::Drain<'_, PathBuf> {
        self.full.drain(..)
    }

    /// At shutdown, once everything appended is applied: delete the current segment.
    /// Left for replay if full segments were never handed on, or records are unapplied.
    pub(crate) fn close(mut self, applied: u64) {
        self.window = None;
        if self.full.is_empty() && self.last <= applied {
            if let Err(e) = std::fs::remove_file(&self.path) {
                warn!(segment = %self.path.display(), error = %e, "cannot delete the last journal segment");
            }
        } else {
            // Kept for the next start: without the space reserved past its records.
            let _ = self.file.set_len(self.len);
        }
    }

    /// Close the current segment and open a new one starting at `next_seq`.
    fn rotate(&mut self, next_seq: u64) -> io::Result<()> {
        let path = segment_path(&self.db, next_seq);
        let file = open_segment(&path)?;
        self.window = None;
        // The full segment keeps its records only, not the space reserved past them.
        let _ = self.file.set_len(self.len);
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        if self.len > 0 {
            self.full.push(old);
        } else if let Err(e) = std::fs::remove_file(&old) {
            warn!(segment = %old.display(), error = %e, "cannot delete an empty journal segment");
        }
        self.len = 0;
        self.reserved = 0;
        Ok(())
    }
}

fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

/// Reserve `len` bytes of `file` from `offset` (extending it; the new bytes read as zeros).
fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    match unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The system's page size (mapping offsets must be multiples of it).
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests;
