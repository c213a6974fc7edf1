//! Moderation in the history file: judging an action against the chats it
//! names, committing it with its audit row in one transaction, and reading
//! a room's rules and audit log back. The tables are schema version 3
//! (`schema.rs`): `sanctions` (mutes and bans), `room_modes`, `audit`.
//!
//! A deleted chat keeps its row, its id and its time, but its text is
//! gone: `json` becomes empty and `audience` becomes `'deleted'`, which no
//! read that serves people selects (they keep `'room'`), so history,
//! `since` and the HTTP pages leave it out. The file runs with
//! `secure_delete`, so the old text is overwritten, not left in a free
//! page, and the next checkpoint (when the chat is idle) empties the
//! write-ahead log, whose old pages would still hold it. Keeping the row (rather than deleting it) keeps the room's first
//! id where it was, so `since` still knows what retention removed. An edit
//! rewrites the row's `json` with the new text and `edited_ts`, so every
//! replay carries the latest text.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Store, sql_int};
use crate::archivist::moderation::{Action, AuditEntry, Effect, Rules, Ruling, Sanction};
use crate::archivist::{Audience, judge};
use crate::config::AUDIT_PAGE_MAX;
use crate::ids::now_ms;
use crate::protocol::{Command, Reason, Refusal, RoomMode, username_key};

impl Store {
    /// A room's mode and the mutes and bans still running.
    pub fn rules(&self, room: &str) -> rusqlite::Result<Rules> {
        let now = sql_int(now_ms());
        let mut rules = Rules::default();
        let mode: Option<String> = self
            .conn
            .prepare_cached("SELECT mode FROM room_modes WHERE room = ?1")?
            .query_row([room], |row| row.get(0))
            .optional()?;
        rules.mode = mode
            .as_deref()
            .and_then(RoomMode::named)
            .unwrap_or_default();
        let mut statement = self.conn.prepare_cached(
            "SELECT kind, user_key, username, until_ms, reason FROM sanctions
             WHERE room = ?1 AND until_ms > ?2",
        )?;
        let rows = statement.query_map(params![room, now], |row| {
            let sanction = Sanction {
                username: row.get(2)?,
                until: row.get::<_, i64>(3)? as u64,
                reason: row.get(4)?,
            };
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, sanction))
        })?;
        for row in rows {
            let (kind, key, sanction) = row?;
            let map = if kind == "ban" {
                &mut rules.bans
            } else {
                &mut rules.mutes
            };
            map.insert(key, sanction);
        }
        Ok(rules)
    }

    /// Judges `action` and, if it is allowed, commits it with its audit
    /// row. A refusal changes nothing; a failure to write is a refusal too.
    pub fn moderate(&mut self, action: &Action) -> Result<Ruling, Refusal> {
        let kind = action.command.kind();
        let mut attempt = || -> rusqlite::Result<Result<Ruling, Refusal>> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let judged = decide(&tx, action, now_ms())?;
            if let Ok((ruling, target)) = &judged {
                record(&tx, ruling, kind.as_str(), target.as_deref())?;
                tx.commit()?;
            }
            self.erase_due |= matches!(&judged, Ok((r, _)) if matches!(r.effect, Effect::Deleted { .. } | Effect::Edited { .. }));
            Ok(judged.map(|(ruling, _)| ruling))
        };
        attempt().unwrap_or_else(|e| {
            Err(Refusal::new(
                Some(kind),
                Reason::ChatNotStored,
                format!("the action could not be stored, so nothing was done: {e}"),
            ))
        })
    }

    /// Up to `limit` (at most `AUDIT_PAGE_MAX`) rows of `room`'s audit log
    /// before `before` (or the newest), oldest first.
    pub fn audit(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> rusqlite::Result<Vec<AuditEntry>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT seq, ts, actor, action, target, detail FROM audit
             WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![
                room,
                sql_int(before.unwrap_or(u64::MAX)),
                sql_int(limit.min(AUDIT_PAGE_MAX) as u64)
            ],
            |row| {
                Ok(AuditEntry {
                    seq: row.get::<_, i64>(0)? as u64,
                    ts: row.get::<_, i64>(1)? as u64,
                    by: row.get(2)?,
                    action: row.get(3)?,
                    target: row.get(4)?,
                    detail: row.get(5)?,
                })
            },
        )?;
        let mut entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        entries.reverse();
        Ok(entries)
    }
}

/// A ruling, and whom the audit log names (for a delete or an edit, the
/// chat's author).
type Judged = Result<(Ruling, Option<String>), Refusal>;

/// Decides an action (`judge.rs`) and makes its change inside `tx` (not
/// committed).
fn decide(tx: &Transaction, action: &Action, now: u64) -> rusqlite::Result<Judged> {
    let room = action.room.as_str();
    let ruling = |effect| Ruling {
        room: room.to_string(),
        by: action.actor.name.clone(),
        ts: now,
        effect,
    };
    let (effect, target) = match &action.command {
        Command::Delete { id } | Command::Edit { id, .. } => {
            let found = tx
                .prepare_cached(
                    "SELECT ts, json, audience FROM chats WHERE room = ?1 AND id = ?2 AND audience <> 'deleted'",
                )?
                .query_row(params![room, sql_int(*id)], |row| {
                    let audience: String = row.get(2)?;
                    Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?, audience))
                })
                .optional()?;
            let Some((ts, json, audience)) = found else {
                return Ok(Err(judge::unknown_chat(action, *id)));
            };
            if audience != Audience::Room.as_str() && matches!(action.command, Command::Edit { .. })
            {
                // Its new text would be announced to the whole room.
                let details =
                    format!("chat {id} went to mutual followers only; it cannot be edited");
                let kind = Some(action.command.kind());
                return Ok(Err(Refusal::new(kind, Reason::NotAllowed, details)));
            }
            let (effect, author) = match judge::judge_chat(action, &json, ts, now) {
                Ok(judged) => judged,
                Err(refusal) => return Ok(Err(refusal)),
            };
            match &effect {
                Effect::Edited { json, .. } => {
                    let stored = String::from_utf8_lossy(json);
                    tx.prepare_cached("UPDATE chats SET json = ?3 WHERE room = ?1 AND id = ?2")?
                        .execute(params![room, sql_int(*id), stored])?;
                }
                _ => {
                    tx.prepare_cached(
                        "UPDATE chats SET json = '', audience = 'deleted' WHERE room = ?1 AND id = ?2",
                    )?
                    .execute(params![room, sql_int(*id)])?;
                }
            }
            (effect, Some(author))
        }
        command => {
            let effect = judge::effect_of(command, now);
            let changed = match &effect {
                Effect::Muted { username, until } => set(tx, room, "mute", username, *until, "")?,
                Effect::Banned {
                    username,
                    until,
                    reason,
                } => set(tx, room, "ban", username, *until, reason)?,
                Effect::Unmuted { username } => unset(tx, room, "mute", username, now)?,
                Effect::Unbanned { username } => unset(tx, room, "ban", username, now)?,
                Effect::ModeSet { mode } => tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO room_modes (room, mode) VALUES (?1, ?2)",
                    )?
                    .execute(params![room, mode.as_str()])?,
                _ => 1,
            };
            if changed == 0 {
                return Ok(Err(judge::not_sanctioned(action)));
            }
            (effect, command.target().map(str::to_string))
        }
    };
    Ok(Ok((ruling(effect), target)))
}

/// Records a mute or a ban (replacing one that runs).
fn set(
    tx: &Transaction,
    room: &str,
    kind: &str,
    username: &str,
    until: u64,
    reason: &str,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO sanctions (room, kind, user_key, username, until_ms, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        room,
        kind,
        username_key(username),
        username,
        sql_int(until),
        reason
    ])
}

/// Ends a mute or a ban that still runs; 0 if none did.
fn unset(
    tx: &Transaction,
    room: &str,
    kind: &str,
    username: &str,
    now: u64,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM sanctions WHERE room = ?1 AND kind = ?2 AND user_key = ?3 AND until_ms > ?4",
    )?
    .execute(params![room, kind, username_key(username), sql_int(now)])
}

/// Appends the ruling's row to its room's audit log.
fn record(
    tx: &Transaction,
    ruling: &Ruling,
    action: &str,
    target: Option<&str>,
) -> rusqlite::Result<()> {
    let seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit WHERE room = ?1")?
        .query_row([&ruling.room], |row| row.get(0))?;
    tx.prepare_cached(
        "INSERT INTO audit (room, seq, ts, actor, action, target, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ruling.room,
        seq,
        sql_int(ruling.ts),
        ruling.by,
        action,
        target,
        judge::audit_detail(ruling)
    ])?;
    Ok(())
}
