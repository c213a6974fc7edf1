//! The history file, open: every statement the archivist runs on it
//! (storing chats with their ids, reading them back, the readiness probe,
//! checkpoints and retention). Opening, checking and migrating the file is
//! `schema.rs`. Only the archivist thread holds a `Store` (it is moved
//! there by `Archive::spawn`), so nothing here locks or shares anything.
//!
//! Ids are given out here, not by the dispatcher, because only what is
//! committed may be broadcast: an id must belong to a row that exists. The
//! `rooms` table keeps each room's last id in the same transaction as the
//! chats, so ids survive restarts and are never reused, even after
//! retention has deleted the rows that carried them. (Taking `MAX(id)` from
//! the chats instead was rejected: it forgets ids whose rows were deleted.)
//!
//! Each chat is stored with its audience (`Audience`), and every read that
//! serves history to people (`recent`, `since`, `page`) keeps only chats
//! sent to the whole room: a chat that reached only mutual followers stays
//! out of history whatever flags the server runs with later. Ids are given
//! out to both, so a room's history may skip ids; nothing here takes a gap
//! in ids for a missing chat.

mod moderation;
mod schema;
mod stamp;

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Audience, StoredChat};
use crate::config::HISTORY_PAGE_MAX;
use crate::ids::{ConnId, now_ms};

pub use schema::{SCHEMA_VERSION, open};
use stamp::{Checked, check, stamp};

/// A chat waiting to be stored.
pub struct Append {
    pub room: String,
    pub conn: ConnId,
    pub json: Vec<u8>,
    pub audience: Audience,
}

/// What became of a batch of appends.
#[derive(Default)]
pub struct Outcome {
    pub committed: Vec<(String, ConnId, StoredChat)>,
    pub failed: Vec<(String, ConnId, String)>,
}

/// A room as the database knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Room {
    /// The last id given out (0: none yet).
    last_id: u64,
    /// The ts of that chat.
    last_ts: u64,
    /// The oldest id still stored; `last_id + 1` when none is.
    first_id: u64,
}

/// The open history file, locked for this process.
pub struct Store {
    conn: Connection,
    /// Chats kept per room.
    retain: u64,
    /// Chats kept in the whole store, and how many it holds now (counted at
    /// start-up, then kept up to date by every commit and deletion).
    retain_total: u64,
    total: u64,
    /// Most chats one `since` answer holds.
    history_max: usize,
    /// Rooms known to hold more than `retain` chats.
    over_retention: BTreeSet<String>,
    /// A chat's text was deleted or replaced: the next checkpoint empties
    /// the write-ahead log too, whose old pages still hold it.
    erase_due: bool,
}

/// Ids and counts are `u64` in Rust and `INTEGER` (i64) in SQLite; no id
/// gets near the limit, and a larger one from a client means "after all".
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A room's newest chats after an id, for people: only those sent to the
/// whole room (the module comment says why).
const AFTER: &str = "SELECT id, ts, json FROM chats
     WHERE room = ?1 AND id > ?2 AND audience = 'room' ORDER BY id DESC LIMIT ?3";

/// A room's newest chats before an id, for people: likewise.
const BEFORE: &str = "SELECT id, ts, json FROM chats
     WHERE room = ?1 AND id < ?2 AND audience = 'room' ORDER BY id DESC LIMIT ?3";

fn chat_from_row(row: &rusqlite::Row) -> rusqlite::Result<StoredChat> {
    Ok(StoredChat {
        id: row.get::<_, i64>(0)? as u64,
        ts: row.get::<_, i64>(1)? as u64,
        json: Bytes::from(row.get::<_, String>(2)?),
    })
}

/// The room's state in the database (a room never written is empty).
fn load_room(conn: &Connection, name: &str) -> rusqlite::Result<Room> {
    let (last_id, last_ts) = conn
        .prepare_cached("SELECT last_id, last_ts FROM rooms WHERE name = ?1")?
        .query_row([name], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
        })
        .optional()?
        .unwrap_or((0, 0));
    let first_id: Option<i64> = conn
        .prepare_cached("SELECT MIN(id) FROM chats WHERE room = ?1")?
        .query_row([name], |row| row.get(0))?;
    Ok(Room {
        last_id,
        last_ts,
        first_id: first_id.map_or(last_id + 1, |id| id as u64),
    })
}

impl Store {
    /// Stores the appends in one transaction: each gets its room's next id
    /// and the time. All or none are stored (an append that is not a JSON
    /// object is refused on its own beforehand and takes no id).
    pub fn append(&mut self, appends: Vec<Append>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut valid = Vec::with_capacity(appends.len());
        for append in appends {
            match check(append) {
                Ok(checked) => valid.push(checked),
                Err(refused) => outcome.failed.push(refused),
            }
        }
        if valid.is_empty() {
            return outcome;
        }
        match self.write(&valid) {
            Ok(chats) => {
                outcome.committed = valid
                    .into_iter()
                    .zip(chats)
                    .map(|(append, chat)| (append.room, append.conn, chat))
                    .collect();
            }
            Err(error) => {
                let reason = format!("the chat could not be stored: {error}");
                outcome.failed.extend(
                    valid
                        .into_iter()
                        .map(|append| (append.room, append.conn, reason.clone())),
                );
            }
        }
        outcome
    }

    fn write(&mut self, appends: &[Checked]) -> rusqlite::Result<Vec<StoredChat>> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rooms: HashMap<&str, Room> = HashMap::new();
        let mut chats = Vec::with_capacity(appends.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO chats (room, id, ts, json, audience) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for append in appends {
                let room = match rooms.entry(&append.room) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => entry.insert(load_room(&tx, &append.room)?),
                };
                room.last_id += 1;
                room.last_ts = room.last_ts.max(now);
                let text = stamp(&append.body, append.separator, room.last_id, room.last_ts);
                insert.execute(params![
                    append.room,
                    sql_int(room.last_id),
                    sql_int(room.last_ts),
                    text,
                    append.audience.as_str(),
                ])?;
                chats.push(StoredChat {
                    id: room.last_id,
                    ts: room.last_ts,
                    json: Bytes::from(text),
                });
            }
            let mut update = tx.prepare_cached(
                "INSERT INTO rooms (name, last_id, last_ts) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id, last_ts = excluded.last_ts",
            )?;
            for (name, room) in &rooms {
                update.execute(params![name, sql_int(room.last_id), sql_int(room.last_ts)])?;
            }
        }
        tx.commit()?;
        self.total += appends.len() as u64;
        for (name, room) in rooms {
            if room.last_id - room.first_id + 1 > self.retain {
                self.over_retention.insert(name.to_string());
            }
        }
        Ok(chats)
    }

    /// The room's last id and its newest `recent` chats sent to the whole
    /// room, oldest first.
    pub fn recent(
        &mut self,
        room: &str,
        recent: usize,
    ) -> rusqlite::Result<(u64, Vec<StoredChat>)> {
        let last_id = load_room(&self.conn, room)?.last_id;
        let chats = self.newest(AFTER, room, 0, recent.min(self.history_max))?;
        Ok((last_id, chats))
    }

    /// The chats sent to the whole room after `after` (the newest
    /// `history_max` of them), and whether they are all of them: false when
    /// `after` is an id the room never gave out, or chats after it were left
    /// out (the cap, or deleted by retention).
    pub fn since(&mut self, room: &str, after: u64) -> rusqlite::Result<(Vec<StoredChat>, bool)> {
        let stored = load_room(&self.conn, room)?;
        if after > stored.last_id {
            // The client's id is from another history (a replaced file):
            // it gets the newest chats, marked incomplete.
            let chats = self.since(room, 0)?.0;
            return Ok((chats, false));
        }
        // One more than the cap, to know whether the cap cut any.
        let mut chats = self.newest(AFTER, room, after, self.history_max.saturating_add(1))?;
        let cut = chats.len() > self.history_max;
        if cut {
            chats.remove(0);
        }
        // Retention deleted nothing after `after` when the oldest chat
        // still stored (of any audience) comes right after it or earlier.
        let complete = !cut && stored.first_id <= after + 1;
        Ok((chats, complete))
    }

    /// Up to `limit` (at most `HISTORY_PAGE_MAX`) chats sent to the whole
    /// room before the id `before` (or the newest), oldest first.
    pub fn page(
        &mut self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> rusqlite::Result<Vec<StoredChat>> {
        self.newest(
            BEFORE,
            room,
            before.unwrap_or(u64::MAX),
            limit.min(HISTORY_PAGE_MAX),
        )
    }

    /// Runs a query that takes (room, an id, a limit) and reads rows newest
    /// first, and returns them oldest first.
    fn newest(
        &self,
        sql: &str,
        room: &str,
        id: u64,
        limit: usize,
    ) -> rusqlite::Result<Vec<StoredChat>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(
            params![room, sql_int(id), sql_int(limit as u64)],
            chat_from_row,
        )?;
        let mut chats = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        chats.reverse();
        Ok(chats)
    }

    /// A trivial write transaction, for the readiness check.
    pub fn probe(&mut self) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('probe_ms', ?1)")?
            .execute([sql_int(now_ms())])?;
        Ok(())
    }

    /// Copies what the write-ahead log holds into the database file, so that
    /// the log starts again from its beginning at the next commit. Nothing
    /// else reads the file (it is locked), so a passive checkpoint copies
    /// everything. Returns the log's pages and those now copied.
    pub fn checkpoint(&mut self) -> rusqlite::Result<(i64, i64)> {
        let sql = if std::mem::take(&mut self.erase_due) {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        self.conn
            .query_row(sql, [], |row| Ok((row.get(1)?, row.get(2)?)))
    }

    /// True while some room holds more chats than it keeps, or the whole
    /// store does.
    pub fn over_retention(&self) -> bool {
        !self.over_retention.is_empty() || self.total > self.retain_total
    }

    /// One retention pass, in one transaction: deletes at most `budget` of
    /// the oldest chats of rooms over their limit, then, with what is left
    /// of the budget, of the least recently active rooms while the whole
    /// store is over its own.
    pub fn prune(&mut self, budget: u64) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut done = Vec::new();
        let mut left = budget;
        {
            // Ids below the room's first stored id are gone already, so this
            // deletes the range first_id..=upper and reads nothing else.
            let mut delete = tx.prepare_cached("DELETE FROM chats WHERE room = ?1 AND id <= ?2")?;
            for name in &self.over_retention {
                if left == 0 {
                    break;
                }
                let room = load_room(&tx, name)?;
                let cutoff = room.last_id.saturating_sub(self.retain);
                if room.first_id > cutoff {
                    done.push(name.clone());
                    continue;
                }
                let upper = cutoff.min(room.first_id + left - 1);
                let deleted = delete.execute(params![name, sql_int(upper)])? as u64;
                left -= upper - room.first_id + 1;
                self.total = self.total.saturating_sub(deleted);
                if upper == cutoff {
                    done.push(name.clone());
                }
            }
            // The whole store: the room whose last chat is oldest goes first.
            let mut stalest = tx.prepare_cached(
                "SELECT name FROM rooms WHERE EXISTS (SELECT 1 FROM chats WHERE chats.room = rooms.name)
                 ORDER BY last_ts LIMIT 1",
            )?;
            while left > 0 && self.total > self.retain_total {
                let Some(name) = stalest
                    .query_row([], |row| row.get::<_, String>(0))
                    .optional()?
                else {
                    break;
                };
                let room = load_room(&tx, &name)?;
                let excess = self.total - self.retain_total;
                let upper = room.last_id.min(room.first_id + left.min(excess) - 1);
                let deleted = delete.execute(params![name, sql_int(upper)])? as u64;
                left = left.saturating_sub(upper - room.first_id + 1);
                self.total = self.total.saturating_sub(deleted);
            }
        }
        tx.commit()?;
        for name in done {
            self.over_retention.remove(&name);
        }
        Ok(())
    }

    /// Chats in the whole store (at start-up).
    fn count_chats(&self) -> rusqlite::Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM chats", [], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
    }

    /// Rooms that hold more than `retain` chats (at start-up: the limit may
    /// have been lowered since the file was written).
    fn rooms_over_retention(&self) -> rusqlite::Result<BTreeSet<String>> {
        let mut statement = self.conn.prepare(
            "SELECT name FROM rooms
             WHERE last_id - ?1 >= (SELECT MIN(id) FROM chats WHERE chats.room = rooms.name)",
        )?;
        let names = statement.query_map([sql_int(self.retain)], |row| row.get(0))?;
        names.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archivist::ArchiveConfig;
    use crate::config::WAL_CHECKPOINT_PAGES;

    fn memory(retain: usize, history_max: usize) -> Store {
        open(&ArchiveConfig {
            path: ":memory:".to_string(),
            fsync: false,
            retain,
            retain_total: crate::config::DEFAULT_RETAIN_TOTAL,
            history_max,
        })
        .expect("open an in-memory database")
    }

    fn append(store: &mut Store, room: &str, n: usize) -> Outcome {
        let appends = (0..n)
            .map(|i| Append {
                room: room.to_string(),
                conn: i as u64,
                json: format!(r#"{{"type":"chat","text":"{i}"}}"#).into_bytes(),
                audience: Audience::Room,
            })
            .collect();
        store.append(appends)
    }

    fn ids(chats: &[StoredChat]) -> Vec<u64> {
        chats.iter().map(|chat| chat.id).collect()
    }

    #[test]
    fn chats_stay_in_the_log_until_the_archivist_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let mut store = open(&ArchiveConfig::new(path.to_str().unwrap())).unwrap();
        let autocheckpoint: i64 = store
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, WAL_CHECKPOINT_PAGES);
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        for _ in 0..20 {
            append(&mut store, "a", 50);
        }
        assert_eq!(size(), before, "no checkpoint inside a commit");
        let (log, copied) = store.checkpoint().unwrap();
        assert!(log > 0 && copied == log, "log {log}, copied {copied}");
        assert!(size() > before, "the chats reached the database file");
        assert_eq!(ids(&store.page("a", None, 3).unwrap()), [998, 999, 1000]);
    }

    #[test]
    fn a_refused_append_takes_no_id() {
        let mut store = memory(10, 10);
        let outcome = store.append(vec![
            Append {
                room: "a".into(),
                conn: 1,
                json: b"not json".to_vec(),
                audience: Audience::Room,
            },
            Append {
                room: "a".into(),
                conn: 2,
                json: b"{}".to_vec(),
                audience: Audience::Room,
            },
        ]);
        assert_eq!(outcome.failed.len(), 1);
        assert_eq!(outcome.failed[0].1, 1);
        assert_eq!(outcome.committed.len(), 1);
        assert_eq!(outcome.committed[0].1, 2);
        assert_eq!(outcome.committed[0].2.id, 1);
    }

    #[test]
    fn a_full_disk_fails_the_whole_batch_and_spends_no_id() {
        let mut store = memory(100_000, 10);
        append(&mut store, "a", 1);
        // Cap the file at its current size: the next transaction finds the disk "full".
        let pages: i64 = store
            .conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap();
        store
            .conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(50_000)).into_bytes();
        let outcome = store.append(vec![
            Append {
                room: "a".into(),
                conn: 1,
                json: b"{}".to_vec(),
                audience: Audience::Room,
            },
            Append {
                room: "a".into(),
                conn: 2,
                json: big,
                audience: Audience::Room,
            },
        ]);
        assert!(outcome.committed.is_empty());
        assert_eq!(outcome.failed.len(), 2);
        assert!(
            outcome.failed[0].2.contains("full"),
            "{}",
            outcome.failed[0].2
        );
        store
            .conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        let outcome = append(&mut store, "a", 1);
        assert_eq!(outcome.committed[0].2.id, 2, "the failed batch spent no id");
        assert_eq!(ids(&store.page("a", None, 10).unwrap()), [1, 2]);
    }

    #[test]
    fn ts_never_decreases_within_a_room() {
        let mut store = memory(10, 10);
        append(&mut store, "a", 1);
        // A clock far ahead when the last chat was written.
        let future = now_ms() + 3_600_000;
        store
            .conn
            .execute("UPDATE rooms SET last_ts = ?1", [sql_int(future)])
            .unwrap();
        let outcome = append(&mut store, "a", 2);
        assert!(outcome.committed.iter().all(|(_, _, c)| c.ts == future));
    }

    #[test]
    fn prune_deletes_in_bounded_passes_down_to_the_limit() {
        let mut store = memory(3, 100);
        append(&mut store, "a", 10);
        append(&mut store, "b", 2);
        assert!(store.over_retention());
        store.prune(4).unwrap();
        assert_eq!(
            ids(&store.page("a", None, 100).unwrap()),
            [5, 6, 7, 8, 9, 10]
        );
        assert!(store.over_retention());
        store.prune(4).unwrap();
        assert_eq!(ids(&store.page("a", None, 100).unwrap()), [8, 9, 10]);
        assert_eq!(ids(&store.page("b", None, 100).unwrap()), [1, 2]);
        store.prune(4).unwrap();
        assert!(!store.over_retention());
        let outcome = append(&mut store, "a", 1);
        assert_eq!(outcome.committed[0].2.id, 11);
    }

    #[test]
    fn rooms_over_retention_are_found_at_start_up() {
        let mut store = memory(100, 100);
        append(&mut store, "a", 5);
        append(&mut store, "b", 2);
        store.retain = 3;
        let over = store.rooms_over_retention().unwrap();
        assert_eq!(over.into_iter().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn since_reports_gaps_and_unknown_ids() {
        let mut store = memory(100, 3);
        append(&mut store, "a", 5);
        let (chats, complete) = store.since("a", 2).unwrap();
        assert_eq!((ids(&chats), complete), (vec![3, 4, 5], true));
        let (chats, complete) = store.since("a", 1).unwrap();
        assert_eq!((ids(&chats), complete), (vec![3, 4, 5], false));
        let (chats, complete) = store.since("a", 5).unwrap();
        assert_eq!((ids(&chats), complete), (vec![], true));
        let (chats, complete) = store.since("a", 6).unwrap();
        assert_eq!((ids(&chats), complete), (vec![3, 4, 5], false));
        let (chats, complete) = store.since("nobody", 0).unwrap();
        assert_eq!((ids(&chats), complete), (vec![], true));
    }

    #[test]
    fn chats_sent_to_mutual_followers_never_come_back_as_history() {
        let mut store = memory(100, 100);
        let chat = |text: &str, audience| Append {
            room: "a".into(),
            conn: 1,
            json: format!(r#"{{"type":"chat","text":"{text}"}}"#).into_bytes(),
            audience,
        };
        let outcome = store.append(vec![
            chat("public", Audience::Room),
            chat("private", Audience::Mutual),
            chat("private too", Audience::Mutual),
            chat("public again", Audience::Room),
        ]);
        // Every chat takes an id; the private ones are stored like the rest.
        assert_eq!(
            ids(&outcome
                .committed
                .into_iter()
                .map(|c| c.2)
                .collect::<Vec<_>>()),
            [1, 2, 3, 4]
        );
        let (last_id, recent) = store.recent("a", 10).unwrap();
        assert_eq!((last_id, ids(&recent)), (4, vec![1, 4]));
        assert_eq!(ids(&store.page("a", None, 10).unwrap()), [1, 4]);
        assert_eq!(ids(&store.page("a", Some(4), 10).unwrap()), [1]);
        // The gap of private ids is no chat missing: `since` stays complete.
        let (chats, complete) = store.since("a", 1).unwrap();
        assert_eq!((ids(&chats), complete), (vec![4], true));
        let (chats, complete) = store.since("a", 0).unwrap();
        assert_eq!((ids(&chats), complete), (vec![1, 4], true));
    }
}
