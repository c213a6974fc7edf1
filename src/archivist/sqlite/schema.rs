//! Opening the history file: its schema and versions, the lock, and the
//! checks that make a bad file stop the server at start-up rather than at
//! the first chat. What runs once the file is open is in `mod.rs`.
//!
//! The checks run in a chosen order, each before the step that could
//! damage or mislead: the writability check before SQLite (whose error for
//! it does not say what is unwritable), the exclusive lock before the
//! first read, the version check and migration in one transaction (so a
//! refused file is left as it was), and the switch to a write-ahead log
//! only once the file is known to be ours (it rewrites the header). A
//! failure at any step is an `ArchiveError` in words an operator can act
//! on (`sqlite_error`).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::Store;
use crate::archivist::{ArchiveConfig, ArchiveError, ArchiveErrorKind};
use crate::config::{
    ARCHIVE_LOCK_WAIT, WAL_CHECKPOINT_PAGES, WAL_CHECKPOINT_PAGES_FSYNC, WAL_SIZE_LIMIT_BYTES,
};
use crate::ids::now_ms;

/// The schema, as steps: entry `i` takes a file from version `i` to `i + 1`
/// (`PRAGMA user_version`). A new version is one more entry; a file is
/// brought up to date step by step, inside the transaction that opens it.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE rooms (
         name    TEXT PRIMARY KEY,
         last_id INTEGER NOT NULL, -- last id given out; kept when its row is deleted
         last_ts INTEGER NOT NULL  -- so that ts never decreases, even if the clock does
     ) WITHOUT ROWID;
     CREATE TABLE chats (
         room TEXT NOT NULL,
         id   INTEGER NOT NULL,
         ts   INTEGER NOT NULL,    -- ms since the Unix epoch
         json TEXT NOT NULL,       -- the exact text that was broadcast
         UNIQUE (room, id)         -- the index every query reads
     );
     CREATE TABLE meta (
         key   TEXT PRIMARY KEY,   -- opened_ms, probe_ms: when the file was last written
         value
     ) WITHOUT ROWID;",
    // 1 -> 2: whom each chat was sent to, so that history never shows a chat
    // sent under --mutual-follows, even after a restart without it. Every
    // chat of a version 1 file went to its whole room. (Reads keep only
    // 'room', so a value this server does not know is never shown.)
    "ALTER TABLE chats ADD COLUMN audience TEXT NOT NULL DEFAULT 'room'; -- or 'mutual'",
    // 2 -> 3: moderation. A deleted chat keeps its row with no text and the
    // audience 'deleted' (`sqlite/moderation.rs`); mutes and bans, each
    // room's mode and its audit log are kept with the room.
    "CREATE TABLE sanctions (
         room     TEXT NOT NULL,
         kind     TEXT NOT NULL,   -- 'mute' or 'ban'
         user_key TEXT NOT NULL,   -- the name as compared (username_key)
         username TEXT NOT NULL,
         until_ms INTEGER NOT NULL,
         reason   TEXT NOT NULL,
         PRIMARY KEY (room, kind, user_key)
     ) WITHOUT ROWID;
     CREATE TABLE room_modes (
         room TEXT PRIMARY KEY,
         mode TEXT NOT NULL        -- 'open' or 'lecture'
     ) WITHOUT ROWID;
     CREATE TABLE audit (
         room   TEXT NOT NULL,
         seq    INTEGER NOT NULL,  -- 1, 2, … within the room
         ts     INTEGER NOT NULL,
         actor  TEXT NOT NULL,
         action TEXT NOT NULL,     -- the command's type
         target TEXT,
         detail TEXT NOT NULL,
         UNIQUE (room, seq)
     );",
];

/// The schema version this server writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens, locks, checks and (if need be) migrates the file.
pub fn open(config: &ArchiveConfig) -> Result<Store, ArchiveError> {
    let path = config.path.as_str();
    let fail = |error: rusqlite::Error| sqlite_error(path, error);
    check_writable(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(fail)?;
    // Another server holding the file is an error at once, not a wait.
    conn.busy_timeout(ARCHIVE_LOCK_WAIT).map_err(fail)?;
    // Once taken, the lock is kept until the connection closes: a second
    // server on the same file cannot start, instead of interleaving ids. Set
    // before the first read, so that WAL needs no shared-memory file either.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(fail)?;
    check_and_migrate(&mut conn, path)?;
    // Only now, once the file is known to be ours: switching the journal
    // mode rewrites the file's header.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(fail)?;
    if mode != "wal" && path != ":memory:" {
        return Err(ArchiveError::new(
            ArchiveErrorKind::Other,
            path,
            format!("cannot use a write-ahead log (journal mode stays {mode:?})"),
        ));
    }
    // NORMAL: a commit is in the operating system's hands when it returns, so
    // it survives the process being killed, but a power loss may take the last
    // commits. FULL waits for the disk on every commit.
    let synchronous = if config.fsync { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(fail)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
        .map_err(fail)?;
    // A deleted chat's text is overwritten, not left in a free page.
    conn.pragma_update(None, "secure_delete", true)
        .map_err(fail)?;
    // A checkpoint inside a commit makes every chat in it wait for the disk;
    // the archivist checkpoints when idle (`Store::checkpoint`), and SQLite
    // only past this bound.
    let checkpoint_pages = if config.fsync {
        WAL_CHECKPOINT_PAGES_FSYNC
    } else {
        WAL_CHECKPOINT_PAGES
    };
    conn.pragma_update(None, "wal_autocheckpoint", checkpoint_pages)
        .map_err(fail)?;
    let mut store = Store {
        conn,
        retain: config.retain as u64,
        retain_total: config.retain_total as u64,
        total: 0,
        history_max: config.history_max,
        over_retention: BTreeSet::new(),
        erase_due: false,
    };
    store.over_retention = store.rooms_over_retention().map_err(fail)?;
    store.total = store.count_chats().map_err(fail)?;
    Ok(store)
}

/// Takes the write lock, refuses a file that is not ours (or is newer than
/// this server), migrates an older one, and writes once, so that a file or
/// directory that cannot be written is found now and not at the first chat.
/// Everything happens in one transaction: on any refusal it is rolled back
/// and the file is as it was.
fn check_and_migrate(conn: &mut Connection, path: &str) -> Result<(), ArchiveError> {
    let fail = |error: rusqlite::Error| sqlite_error(path, error);
    let refuse = |cause: String| ArchiveError::new(ArchiveErrorKind::SchemaVersion, path, cause);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(fail)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail)?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(refuse(format!(
            "schema version {version} is not one this server knows (it knows 1 to {SCHEMA_VERSION}); \
             it was written by a newer threadchat, which this one will not change"
        )));
    }
    if version == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(fail)?;
        if tables > 0 {
            return Err(refuse(
                "an SQLite file with tables of its own and no threadchat schema version: \
                 not a threadchat history file"
                    .to_string(),
            ));
        }
    }
    migrate(&tx, version, SCHEMA_VERSION).map_err(fail)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_ms', ?1)",
        [now_ms() as i64],
    )
    .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// Finds a file or directory this process may not write before SQLite
/// does: SQLite's own error for it ("disk I/O error", "attempt to write a
/// readonly database") does not say which. The directory matters too: the
/// write-ahead log is made beside the file.
fn check_writable(path: &str) -> Result<(), ArchiveError> {
    if path == ":memory:" {
        return Ok(());
    }
    let file = Path::new(path);
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    for (what, target) in [("the file", file), ("its directory", dir)] {
        let Ok(c_path) = CString::new(target.as_os_str().as_bytes()) else {
            return Err(ArchiveError::new(
                ArchiveErrorKind::Other,
                path,
                "the path contains a NUL byte".to_string(),
            ));
        };
        // SAFETY: a valid C string; faccessat only reads it.
        let status = unsafe {
            libc::faccessat(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                libc::W_OK,
                libc::AT_EACCESS,
            )
        };
        if status != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::NotFound {
                // A file not made yet; a missing directory is SQLite's to report.
                continue;
            }
            return Err(ArchiveError::new(
                ArchiveErrorKind::Unwritable,
                path,
                format!(
                    "{what} ({}) cannot be written ({error}); the file and its directory must be writable",
                    target.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Brings the schema from version `from` to `to`, one step at a time, inside
/// the caller's transaction.
fn migrate(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<()> {
    for step in &MIGRATIONS[from as usize..to as usize] {
        conn.execute_batch(step)?;
    }
    conn.pragma_update(None, "user_version", to)
}

/// An SQLite error at start-up, in words an operator can act on.
fn sqlite_error(path: &str, error: rusqlite::Error) -> ArchiveError {
    let (kind, cause) = match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => (
            ArchiveErrorKind::NotADatabase,
            format!("file is not a database, or is damaged ({error}); it was left as it is"),
        ),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
            ArchiveErrorKind::Locked,
            "locked by another process (another threadchat server?)".to_string(),
        ),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => (
            ArchiveErrorKind::Unwritable,
            format!("cannot be written ({error}); the file and its directory must be writable"),
        ),
        _ => (ArchiveErrorKind::Other, error.to_string()),
    };
    ArchiveError::new(kind, path, cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_the_current_schema_version() {
        let store = open(&ArchiveConfig::new(":memory:")).unwrap();
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 3);
    }

    #[test]
    fn a_version_1_file_is_migrated_and_its_chats_went_to_their_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO rooms VALUES ('a', 1, 5);
                 INSERT INTO chats VALUES ('a', 1, 5, '{\"text\":\"old\",\"id\":1,\"ts\":5}');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let mut store = open(&ArchiveConfig::new(path.to_str().unwrap())).unwrap();
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let audience: String = store
            .conn
            .query_row("SELECT audience FROM chats", [], |row| row.get(0))
            .unwrap();
        assert_eq!(audience, "room");
        assert_eq!(store.page("a", None, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_version_2_file_is_migrated_and_its_chats_can_be_moderated() {
        use crate::archivist::moderation::{Action, Actor, Asker, Effect};
        use crate::protocol::{Command, Role};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.execute_batch(
                "INSERT INTO rooms VALUES ('a', 2, 5);
                 INSERT INTO chats VALUES ('a', 1, 5, '{\"text\":\"one\",\"username\":\"w\",\"id\":1,\"ts\":5}', 'room');
                 INSERT INTO chats VALUES ('a', 2, 5, '{\"text\":\"two\",\"username\":\"w\",\"id\":2,\"ts\":5}', 'room');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let mut store = open(&ArchiveConfig::new(path.to_str().unwrap())).unwrap();
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 3);
        assert_eq!(store.page("a", None, 10).unwrap().len(), 2);
        let action = Action {
            room: "a".into(),
            asker: Asker::Conn(1),
            actor: Actor {
                name: "teacher".into(),
                role: Role::Moderator,
            },
            command: Command::Delete { id: 1 },
            edit_window_ms: 0,
        };
        let ruling = store.moderate(&action).unwrap();
        assert_eq!(ruling.effect, Effect::Deleted { id: 1 });
        // The text is gone from the row, not only hidden.
        let json: String = store
            .conn
            .query_row("SELECT json FROM chats WHERE id = 1", [], |row| row.get(0))
            .unwrap();
        assert_eq!(json, "");
        let left = store.page("a", None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, 2);
        let audit = store.audit("a", None, 10).unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].action.as_str(), audit[0].target.as_deref()),
            ("delete", Some("w"))
        );
        // A second delete of it finds nothing.
        assert!(store.moderate(&action).is_err());
    }

    #[test]
    fn a_file_is_in_wal_mode_and_fsync_chooses_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        for (fsync, expected) in [(false, 1), (true, 2)] {
            let path = dir.path().join(format!("fsync-{fsync}.db"));
            let store = open(&ArchiveConfig {
                fsync,
                ..ArchiveConfig::new(path.to_str().unwrap())
            })
            .unwrap();
            let pragma = |name: &str| -> String {
                store
                    .conn
                    .pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                    .map(|value| format!("{value:?}"))
                    .unwrap()
            };
            assert_eq!(pragma("journal_mode"), "Text(\"wal\")");
            assert_eq!(pragma("locking_mode"), "Text(\"exclusive\")");
            // 1 is NORMAL, 2 is FULL.
            assert_eq!(pragma("synchronous"), format!("Integer({expected})"));
            let checkpoint_pages = if fsync {
                WAL_CHECKPOINT_PAGES_FSYNC
            } else {
                WAL_CHECKPOINT_PAGES
            };
            assert_eq!(
                pragma("wal_autocheckpoint"),
                format!("Integer({checkpoint_pages})")
            );
        }
    }
}
