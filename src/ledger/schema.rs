//! The SQLite schema and how connections are opened and checked.
//!
//! One table, `prompts`, keyed by `(session_id, request_id)`: a row is inserted
//! when a prompt arrives and updated by its decision and its delivery. Times are
//! Unix milliseconds; JSON columns hold serialized text.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::record::LedgerError;

/// Schema version stored in `PRAGMA user_version`: 2 added the `kind` and `classification`
/// columns, computed from `request` and `answer`; 3 added `deliveries` and
/// `last_delivered_at`; 4 dropped the computed columns again (SQLite computed them on every
/// insert of a STRICT table, parsing the JSON twice per prompt; queries compute them now,
/// only for the rows they read) and wrote the `outcome` check and the unfinished index
/// without `IN` lists. Older files are brought up to date in place.
pub(crate) const SCHEMA_VERSION: i64 = 4;

/// How long a connection waits for another one's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS prompts (
    session_id    TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    tool_use_id   TEXT,
    tool_name     TEXT    NOT NULL,
    input         TEXT    NOT NULL,
    request       TEXT    NOT NULL,
    received_at   INTEGER NOT NULL,
    outcome       TEXT CHECK (outcome = 'allowed' OR outcome = 'denied' OR outcome = 'cancelled' OR outcome = 'expired'),
    decided_by    TEXT,
    decided_at    INTEGER,
    updated_input TEXT,
    answer        TEXT,
    reason        TEXT,
    delivered_at  INTEGER,
    deliveries    INTEGER NOT NULL DEFAULT 0,
    last_delivered_at INTEGER,
    PRIMARY KEY (session_id, request_id)
) STRICT;
-- Paging newest first, and retention (oldest first).
CREATE INDEX IF NOT EXISTS prompts_by_time ON prompts (received_at, session_id, request_id);
-- Paging one session's rows.
CREATE INDEX IF NOT EXISTS prompts_by_session ON prompts (session_id, received_at, request_id);
-- Startup restore: only the few unfinished rows are in this index.
CREATE INDEX IF NOT EXISTS prompts_unfinished ON prompts (received_at, session_id, request_id)
    WHERE outcome IS NULL OR (outcome <> 'cancelled' AND delivered_at IS NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
";

/// Columns versions 2 and 3 computed from `request` and `answer` (`GENERATED ... VIRTUAL`),
/// dropped by version 4: the audit query computes them instead (`query::COLUMNS`).
const DROPPED: [&str; 2] = ["kind", "classification"];

/// Stored columns added after version 1: how many times the answer was written to a
/// session's socket, and when last (a resend after a replay is a new write). A file that
/// lacks them counts each delivered row as written once.
const STORED: [(&str, &str, &str); 2] = [
    (
        "deliveries",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE prompts SET deliveries = 1 WHERE delivered_at IS NOT NULL",
    ),
    (
        "last_delivered_at",
        "INTEGER",
        "UPDATE prompts SET last_delivered_at = delivered_at",
    ),
];

/// Add the [`STORED`] columns a file made by an older build lacks, and drop the
/// [`DROPPED`] ones it has (virtual: no data is rewritten).
fn upgrade_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut have = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_xinfo('prompts')")?;
        for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
            have.push(name?);
        }
    }
    for (name, definition, fill) in STORED {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!(
                "BEGIN; ALTER TABLE prompts ADD COLUMN {name} {definition}; {fill}; COMMIT;"
            ))?;
        }
    }
    for name in DROPPED {
        if have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE prompts DROP COLUMN {name}"))?;
        }
    }
    Ok(())
}

/// The `WHERE` clause of unfinished rows; must match the `prompts_unfinished` index.
/// (Undecided, or decided but not delivered and not cancelled: the `CHECK` leaves
/// `allowed`, `denied` and `expired`. Written without `IN (...)`: SQLite evaluates a list
/// of three or more constants through a temporary b-tree, on every insert.)
pub(crate) const UNFINISHED: &str =
    "outcome IS NULL OR (outcome <> 'cancelled' AND delivered_at IS NULL)";

/// The `outcome` check of versions 1 to 3, and what version 4 says instead (the same
/// rule without an `IN` list, which cost a temporary b-tree per insert and update).
const OLD_CHECK: &str = "CHECK (outcome IN ('allowed', 'denied', 'cancelled', 'expired'))";
const NEW_CHECK: &str =
    "CHECK (outcome = 'allowed' OR outcome = 'denied' OR outcome = 'cancelled' OR outcome = 'expired')";

/// Bring the constraints of a file made before version 4 up to date: the `prompts_unfinished`
/// index is built again on the new [`UNFINISHED`], and the `outcome` check is reworded in
/// place, by SQLite's documented procedure for changes that leave the stored rows as they
/// are (<https://www.sqlite.org/lang_altertable.html#otheralter>).
fn upgrade_constraints(conn: &mut Connection) -> rusqlite::Result<()> {
    let sql = |conn: &Connection, kind: &str, name: &str| -> rusqlite::Result<String> {
        conn.query_row(
            "SELECT sql FROM sqlite_schema WHERE type = ?1 AND name = ?2",
            [kind, name],
            |r| r.get(0),
        )
    };
    if sql(conn, "index", "prompts_unfinished")?.contains(" IN (") {
        let tx = conn.transaction()?;
        tx.execute_batch(&format!(
            "DROP INDEX prompts_unfinished; \
             CREATE INDEX prompts_unfinished ON prompts (received_at, session_id, request_id) \
             WHERE {UNFINISHED};"
        ))?;
        tx.commit()?;
    }
    let table = sql(conn, "table", "prompts")?;
    if table.contains(OLD_CHECK) {
        let tx = conn.transaction()?;
        let version: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        tx.pragma_update(None, "writable_schema", "ON")?;
        let updated = tx.execute(
            "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'prompts'",
            [table.replace(OLD_CHECK, NEW_CHECK)],
        );
        let bumped = tx.pragma_update(None, "schema_version", version + 1);
        tx.pragma_update(None, "writable_schema", "OFF")?;
        updated?;
        bumped?;
        tx.commit()?;
    }
    Ok(())
}

/// The `WHERE` clause of rows retention may delete (finished; older-than is added by the
/// caller): delivered or cancelled, or answered because the session was removed (written
/// only if it is added back: past retention it is pruned, as a cancel used to be).
pub(crate) const FINISHED: &str = "outcome IS NOT NULL AND (delivered_at IS NOT NULL \
    OR outcome = 'cancelled' OR decided_by = 'session_removed')";

/// Open (creating if needed) the database for writing, apply the schema and prove it is writable.
///
/// Every failure is reported as [`LedgerError::Open`] naming the path, so the service refuses to start.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LedgerError> {
    let fail = |reason: String| LedgerError::Open {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create directory {}: {e}", parent.display())))?;
    }
    if path.is_dir() {
        return Err(fail("is a directory".into()));
    }
    let mut conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
    init(&conn).map_err(|e| fail(e.to_string()))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| fail(e.to_string()))?;
    if version > SCHEMA_VERSION {
        return Err(fail(format!(
            "schema version {version} is newer than this build supports ({SCHEMA_VERSION})"
        )));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| fail(format!("integrity check failed: {e}")))?;
    if check != "ok" {
        return Err(fail(format!("database is corrupt: {check}")));
    }
    conn.execute_batch(SCHEMA)
        .map_err(|e| fail(format!("cannot create schema: {e}")))?;
    upgrade_columns(&conn).map_err(|e| fail(format!("cannot upgrade schema: {e}")))?;
    upgrade_constraints(&mut conn).map_err(|e| fail(format!("cannot upgrade schema: {e}")))?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| fail(e.to_string()))?;
    // A real committed write: catches read-only files and full disks now, not at the first prompt.
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?1)",
        [ccr_protocol::time::rfc3339(std::time::SystemTime::now())],
    )
    .map_err(|e| fail(format!("not writable: {e}")))?;
    Ok(conn)
}

/// Pragmas of the writer: WAL so readers never block it, `synchronous=NORMAL` (durable at checkpoint,
/// never corrupt; a power cut may lose the last commits, a process crash loses none).
fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "cannot switch to WAL mode (journal_mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The checkpointer thread does this work; the writer steps in only if the WAL runs away.
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        super::checkpoint::WRITER_FALLBACK_FRAMES,
    )?;
    Ok(())
}

/// The checkpointer thread's connection (`checkpoint`): read-write, syncing at checkpoints
/// like the writer, and never checkpointing on its own commits (it makes none).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, LedgerError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open = || -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    };
    open().map_err(|e| LedgerError::Open {
        path: path.to_path_buf(),
        reason: format!("checkpointer: {e}"),
    })
}

/// A read-only connection for queries, exports and the startup restore.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, LedgerError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| LedgerError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}
