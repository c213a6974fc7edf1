//! The courier's moderation: judging an action against what Redis holds
//! (`judge.rs`, as the archivist does), making it by script (`MODERATE`),
//! and reading a room's rules, audit log and edits back.
//!
//! The judging reads first (the chat, or the mute being lifted), then the
//! script makes the change only if what it names is still there, logs it
//! and publishes it, in one step. What can change between the two is only
//! that the chat was deleted meanwhile by another node (then the script
//! finds nothing, and the action is refused as unknown); a chat's author
//! and time never change. The publication (`m …`) is how every node, this
//! one too, hears the ruling, in the room's order after the chat it names
//! (`dispatcher/moderation/`): the asker is only told if it was refused.
//!
//! An edit cannot rewrite a stream entry, so the edited chat is kept in the
//! room's `edits` hash and laid over the stream by every read
//! (`overlay_edits`); a delete removes the entry (`XDEL`) and its edit.

use redis::RedisError;
use serde_json::{Value, json};

use super::Courier;
use crate::archivist::judge::{self, to_wire};
use crate::archivist::moderation::{Action, AuditEntry, Effect, Rules, Ruling, Sanction};
use crate::archivist::{Archived, StoredChat};
use crate::cluster::Reply;
use crate::cluster::link::is_connection_error;
use crate::config::AUDIT_PAGE_MAX;
use crate::ids::now_ms;
use crate::protocol::{Command, Reason, Refusal, RoomMode, username_key};

impl<E: From<Reply>> Courier<E> {
    /// Judges and makes `action`; tells the dispatcher how it went.
    pub(super) fn moderate(&mut self, action: Box<Action>) {
        let kind = action.command.kind();
        let outcome = if self.con.is_none() || self.resyncing {
            let details = "the cluster's store is away; try again in a moment";
            Err(Refusal::new(Some(kind), Reason::ChatUnavailable, details))
        } else {
            self.try_moderate(&action).unwrap_or_else(|e| {
                if is_connection_error(&e) {
                    self.lost(&e);
                }
                let details = format!("the action could not be stored, so nothing was done: {e}");
                Err(Refusal::new(Some(kind), Reason::ChatNotStored, details))
            })
        };
        self.send(Archived::Moderated(Box::new((*action, outcome))));
    }

    fn try_moderate(&mut self, action: &Action) -> Result<Result<Ruling, Refusal>, RedisError> {
        let room = action.room.as_str();
        let now = now_ms();
        // (op, field, value) for the script, and whom the audit names.
        let (effect, op, field, value, target) = match &action.command {
            Command::Delete { id } | Command::Edit { id, .. } => {
                let Some(chat) = self.chat(room, *id)? else {
                    return Ok(Err(judge::unknown_chat(action, *id)));
                };
                let json = String::from_utf8_lossy(&chat.json);
                let (effect, author) = match judge::judge_chat(action, &json, chat.ts, now) {
                    Ok(judged) => judged,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let (op, value) = match &effect {
                    Effect::Edited { json, .. } => ("edit", String::from_utf8_lossy(json).into()),
                    _ => ("delete", String::new()),
                };
                (effect, op, id.to_string(), value, Some(author))
            }
            command => {
                let effect = judge::effect_of(command, now);
                let key = command.target().map(username_key).unwrap_or_default();
                let (op, value) = match &effect {
                    Effect::Muted { username, until } => ("set", sanction(username, *until, "")),
                    Effect::Banned {
                        username,
                        until,
                        reason,
                    } => ("set", sanction(username, *until, reason)),
                    Effect::Unmuted { .. } | Effect::Unbanned { .. } => {
                        let sanctions = self.sanctions(room, sanction_kind(command))?;
                        if sanctions.get(&key).is_none_or(|s| s.until <= now) {
                            return Ok(Err(judge::not_sanctioned(action)));
                        }
                        ("unset", String::new())
                    }
                    Effect::ModeSet { mode } => ("mode", mode.as_str().to_string()),
                    _ => ("none", String::new()),
                };
                (effect, op, key, value, command.target().map(str::to_string))
            }
        };
        let ruling = Ruling {
            room: room.to_string(),
            by: action.actor.name.clone(),
            ts: now,
            effect,
        };
        let audit = json!({
            "ts": now,
            "by": ruling.by,
            "action": action.command.kind().as_str(),
            "target": target,
            "detail": judge::audit_detail(&ruling),
        });
        let room_key = |what| self.keys.room_key(room, what);
        let mut script = self.scripts.moderate.prepare_invoke();
        script
            .key(room_key("log"))
            .key(room_key("edits"))
            .key(room_key(sanction_kind(&action.command)))
            .key(room_key("mode"))
            .key(room_key("audit"))
            .arg(self.keys.channel(room))
            .arg(self.cluster_conn(0))
            .arg(op)
            .arg(field)
            .arg(value)
            .arg(audit.to_string())
            .arg(to_wire(&ruling));
        let con = self.con.as_mut().ok_or_else(super::unavailable)?;
        let done: i64 = script.invoke(con)?;
        if done == 0 {
            return Ok(Err(match &action.command {
                Command::Delete { id } | Command::Edit { id, .. } => {
                    judge::unknown_chat(action, *id)
                }
                _ => judge::not_sanctioned(action),
            }));
        }
        Ok(Ok(ruling))
    }

    /// Chat `id` of `room` as it reads now (its edit laid over it), if the
    /// room has it.
    fn chat(&mut self, room: &str, id: u64) -> Result<Option<StoredChat>, RedisError> {
        let entry = format!("{id}-0");
        let entries: Vec<(String, Vec<Vec<u8>>)> = self.query(
            redis::cmd("XRANGE")
                .arg(self.keys.room_key(room, "log"))
                .arg(&entry)
                .arg(&entry),
        )?;
        let mut chats: Vec<StoredChat> = entries
            .into_iter()
            .filter_map(super::chats::stored_chat)
            .collect();
        self.overlay_edits(room, &mut chats)?;
        Ok(chats.pop())
    }

    /// Lays the room's edits over chats read from its stream.
    pub(super) fn overlay_edits(
        &mut self,
        room: &str,
        chats: &mut [StoredChat],
    ) -> Result<(), RedisError> {
        if chats.is_empty() {
            return Ok(());
        }
        let mut get = redis::cmd("HMGET");
        get.arg(self.keys.room_key(room, "edits"));
        for chat in chats.iter() {
            get.arg(chat.id);
        }
        let edits: Vec<Option<Vec<u8>>> = self.query(&get)?;
        for (chat, edit) in chats.iter_mut().zip(edits) {
            if let Some(json) = edit {
                chat.json = json.into();
            }
        }
        Ok(())
    }

    /// A room's mutes or bans (`kind`: `mutes` or `bans`), by name key.
    fn sanctions(
        &mut self,
        room: &str,
        kind: &str,
    ) -> Result<std::collections::HashMap<String, Sanction>, RedisError> {
        let all: std::collections::HashMap<String, String> =
            self.query(redis::cmd("HGETALL").arg(self.keys.room_key(room, kind)))?;
        Ok(all
            .into_iter()
            .filter_map(|(key, value)| {
                let v: Value = serde_json::from_str(&value).ok()?;
                let sanction = Sanction {
                    username: v["username"].as_str()?.to_string(),
                    until: v["until"].as_u64()?,
                    reason: v["reason"].as_str().unwrap_or_default().to_string(),
                };
                Some((key, sanction))
            })
            .collect())
    }

    /// A room's rules, as `Job::Load` sends them before the tail.
    pub(super) fn rules(&mut self, room: &str) -> Result<Rules, RedisError> {
        let now = now_ms();
        let mode: Option<String> =
            self.query(redis::cmd("GET").arg(self.keys.room_key(room, "mode")))?;
        let mut live = |kind| -> Result<_, RedisError> {
            let mut all = self.sanctions(room, kind)?;
            all.retain(|_, s| s.until > now);
            Ok(all)
        };
        Ok(Rules {
            mode: mode
                .as_deref()
                .and_then(RoomMode::named)
                .unwrap_or_default(),
            mutes: live("mutes")?,
            bans: live("bans")?,
        })
    }

    /// `GET /api/rooms/<r>/moderation`: up to `limit` rows before `before`.
    pub(super) fn audit(
        &mut self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, RedisError> {
        let key = self.keys.room_key(room, "audit");
        let total: u64 = self.query(redis::cmd("LLEN").arg(&key))?;
        let end = before.map_or(total, |b| b.saturating_sub(1).min(total));
        let start = end.saturating_sub(limit.min(AUDIT_PAGE_MAX) as u64);
        if end == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<String> =
            self.query(redis::cmd("LRANGE").arg(&key).arg(start).arg(end - 1))?;
        Ok(rows
            .iter()
            .zip(start + 1..)
            .filter_map(|(row, seq)| {
                let v: Value = serde_json::from_str(row).ok()?;
                Some(AuditEntry {
                    seq,
                    ts: v["ts"].as_u64()?,
                    by: v["by"].as_str()?.to_string(),
                    action: v["action"].as_str()?.to_string(),
                    target: v["target"].as_str().map(str::to_string),
                    detail: v["detail"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }
}

/// The hash a command's sanction lives in.
fn sanction_kind(command: &Command) -> &'static str {
    match command {
        Command::Ban { .. } | Command::Unban { .. } => "bans",
        _ => "mutes",
    }
}

fn sanction(username: &str, until: u64, reason: &str) -> String {
    json!({"username": username, "until": until, "reason": reason}).to_string()
}
