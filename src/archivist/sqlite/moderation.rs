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

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value, json};

use super::{Store, sql_int};
use crate::archivist::moderation::{Action, AuditEntry, Effect, Rules, Ruling, Sanction};
use crate::config::AUDIT_PAGE_MAX;
use crate::ids::now_ms;
use crate::protocol::{Command, Reason, Refusal, Role, RoomMode, username_key, utc};

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
            let judged = judge(&tx, action, now_ms())?;
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

/// Decides an action and makes its change inside `tx` (not committed).
fn judge(tx: &Transaction, action: &Action, now: u64) -> rusqlite::Result<Judged> {
    let room = action.room.as_str();
    let kind = action.command.kind();
    let refuse = |reason, details: String| Ok(Err(Refusal::new(Some(kind), reason, details)));
    let effect = match &action.command {
        Command::Delete { id } | Command::Edit { id, .. } => {
            let Some((ts, json)) = tx
                .prepare_cached(
                    "SELECT ts, json FROM chats WHERE room = ?1 AND id = ?2 AND audience <> 'deleted'",
                )?
                .query_row(params![room, sql_int(*id)], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
                })
                .optional()?
            else {
                return refuse(
                    Reason::UnknownMessage,
                    format!("room {room} has no chat {id} (deleted, or never sent)"),
                );
            };
            let mut chat: Map<String, Value> = serde_json::from_str(&json).unwrap_or_default();
            let author = chat.get("username").and_then(Value::as_str).unwrap_or("");
            let own = username_key(author) == username_key(&action.actor.name);
            let editing = matches!(action.command, Command::Edit { .. });
            let moderator_delete = !editing && action.actor.role == Role::Moderator;
            if !moderator_delete {
                if !own {
                    let who = if editing {
                        "only its author"
                    } else {
                        "only its author or a moderator"
                    };
                    let details = format!("chat {id} is {author:?}'s; {who} may {}", kind.as_str());
                    return refuse(Reason::NotAllowed, details);
                }
                if now.saturating_sub(ts) > action.edit_window_ms {
                    let details = format!(
                        "chat {id} was sent more than {} s ago; it can no longer be changed by its author",
                        action.edit_window_ms / 1000
                    );
                    return refuse(Reason::EditWindowPassed, details);
                }
            }
            let author = author.to_string();
            match &action.command {
                Command::Edit { text, .. } => {
                    chat.insert("text".into(), json!(text));
                    chat.insert("edited_ts".into(), json!(now));
                    let stored = serde_json::to_string(&chat).unwrap_or_default();
                    tx.prepare_cached("UPDATE chats SET json = ?3 WHERE room = ?1 AND id = ?2")?
                        .execute(params![room, sql_int(*id), stored])?;
                    return finish(
                        action,
                        now,
                        Some(author),
                        Effect::Edited {
                            id: *id,
                            text: text.clone(),
                            json: Bytes::from(stored),
                        },
                    );
                }
                _ => {
                    tx.prepare_cached(
                        "UPDATE chats SET json = '', audience = 'deleted' WHERE room = ?1 AND id = ?2",
                    )?
                    .execute(params![room, sql_int(*id)])?;
                    return finish(action, now, Some(author), Effect::Deleted { id: *id });
                }
            }
        }
        Command::Mute { username, seconds }
        | Command::Ban {
            username, seconds, ..
        } => {
            let until = now.saturating_add(seconds.saturating_mul(1000));
            let (kind, reason) = match &action.command {
                Command::Ban { reason, .. } => ("ban", reason.as_str()),
                _ => ("mute", ""),
            };
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sanctions (room, kind, user_key, username, until_ms, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![room, kind, username_key(username), username, sql_int(until), reason])?;
            let username = username.clone();
            if kind == "ban" {
                let reason = reason.to_string();
                Effect::Banned {
                    username,
                    until,
                    reason,
                }
            } else {
                Effect::Muted { username, until }
            }
        }
        Command::Unmute { username } | Command::Unban { username } => {
            let kind = if matches!(action.command, Command::Unban { .. }) {
                "ban"
            } else {
                "mute"
            };
            let removed = tx
                .prepare_cached(
                    "DELETE FROM sanctions WHERE room = ?1 AND kind = ?2 AND user_key = ?3 AND until_ms > ?4",
                )?
                .execute(params![room, kind, username_key(username), sql_int(now)])?;
            if removed == 0 {
                let details = format!("{username:?} is not {kind}ned in room {room}");
                let details = details.replace("mutened", "muted");
                return refuse(Reason::UnknownUser, details);
            }
            let username = username.clone();
            if kind == "ban" {
                Effect::Unbanned { username }
            } else {
                Effect::Unmuted { username }
            }
        }
        Command::Kick { username, reason } => Effect::Kicked {
            username: username.clone(),
            reason: reason.clone(),
        },
        Command::RoomMode { mode } => {
            tx.prepare_cached("INSERT OR REPLACE INTO room_modes (room, mode) VALUES (?1, ?2)")?
                .execute(params![room, mode.as_str()])?;
            Effect::ModeSet { mode: *mode }
        }
    };
    let target = action.command.target().map(str::to_string);
    finish(action, now, target, effect)
}

/// The ruling for an effect, with whom it names for the audit log.
fn finish(
    action: &Action,
    now: u64,
    target: Option<String>,
    effect: Effect,
) -> rusqlite::Result<Judged> {
    let ruling = Ruling {
        room: action.room.clone(),
        by: action.actor.name.clone(),
        ts: now,
        effect,
    };
    Ok(Ok((ruling, target)))
}

/// Appends the ruling's row to its room's audit log.
fn record(
    tx: &Transaction,
    ruling: &Ruling,
    action: &str,
    target: Option<&str>,
) -> rusqlite::Result<()> {
    let detail = audit_detail(ruling);
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
        detail
    ])?;
    Ok(())
}

/// What the audit log says of a ruling besides who, whom and when (never
/// a chat's text).
pub(crate) fn audit_detail(ruling: &Ruling) -> String {
    let with_reason = |what: String, reason: &str| match (what.is_empty(), reason.is_empty()) {
        (_, true) => what,
        (true, false) => reason.to_string(),
        (false, false) => format!("{what}: {reason}"),
    };
    match &ruling.effect {
        Effect::Deleted { id } | Effect::Edited { id, .. } => format!("chat {id}"),
        Effect::Muted { until, .. } => format!("until {}", utc(*until)),
        Effect::Unmuted { .. } | Effect::Unbanned { .. } => String::new(),
        Effect::Kicked { reason, .. } => with_reason(String::new(), reason),
        Effect::Banned { until, reason, .. } => {
            with_reason(format!("until {}", utc(*until)), reason)
        }
        Effect::ModeSet { mode } => mode.as_str().to_string(),
    }
}
