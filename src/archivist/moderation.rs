//! Moderation as the store keeps it: an action asked for (`Action`), what
//! it did once committed (`Ruling`), a room's standing rules (`Rules`:
//! its mode, its mutes and bans), and a row of its audit log
//! (`AuditEntry`). The archivist and, with `--redis`, the courier take the
//! same `Action` and give back the same `Ruling`; the dispatcher acts on
//! the ruling only, so nobody is told of an action the store does not
//! hold.
//!
//! An action is judged where the chats are (`sqlite/moderation.rs`, or a
//! Redis script), not by the dispatcher: whether chat 12 exists, who wrote
//! it and when are the store's to know, and judging and committing in one
//! step leaves no moment between them for the chat to change. The
//! dispatcher judges only what needs no store: sign-in, role, the window
//! being on.

use std::collections::HashMap;

use bytes::Bytes;
use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::json;

use crate::ids::ConnId;
use crate::protocol::{self, Command, Refusal, Role, RoomMode};

/// Who asked, for the answer's way back: a connection (through the
/// dispatcher's events) or the operator's HTTP request (its own channel).
#[derive(Debug, Clone)]
pub enum Asker {
    Conn(ConnId),
    Operator(Sender<Result<Ruling, Refusal>>),
}

/// Who acts: the name the room is told (`by`), and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// The operator's API acts as a moderator named `operator`.
    pub fn operator() -> Actor {
        Actor {
            name: "operator".to_string(),
            role: Role::Moderator,
        }
    }
}

/// An action to judge and, if allowed, commit.
#[derive(Debug, Clone)]
pub struct Action {
    pub room: String,
    pub asker: Asker,
    pub actor: Actor,
    pub command: Command,
    /// How long after a chat its author may edit or delete it, in ms
    /// (`--edit-window`; 0: never).
    pub edit_window_ms: u64,
}

/// What a committed action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Deleted {
        id: u64,
    },
    /// `json` is the chat as stored now: its new text, with `edited_ts`.
    Edited {
        id: u64,
        text: String,
        json: Bytes,
    },
    Muted {
        username: String,
        until: u64,
    },
    Unmuted {
        username: String,
    },
    Kicked {
        username: String,
        reason: String,
    },
    Banned {
        username: String,
        until: u64,
        reason: String,
    },
    Unbanned {
        username: String,
    },
    ModeSet {
        mode: RoomMode,
    },
}

/// A committed action: in `room`, by `by`, at `ts` (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    pub room: String,
    pub by: String,
    pub ts: u64,
    pub effect: Effect,
}

impl Ruling {
    /// The message the room is sent: `delete`, `edit`, `mute`, … with
    /// `room` and `by` (the README's protocol lists each).
    pub fn announcement(&self) -> Vec<u8> {
        let what = match &self.effect {
            Effect::Deleted { id } => json!({"type": "delete", "id": id}),
            Effect::Edited { id, text, .. } => {
                json!({"type": "edit", "id": id, "text": text, "edited_ts": self.ts})
            }
            Effect::Muted { username, until } => {
                json!({"type": "mute", "username": username, "until": until})
            }
            Effect::Unmuted { username } => json!({"type": "unmute", "username": username}),
            Effect::Kicked { username, reason } => {
                json!({"type": "kick", "username": username, "reason": reason})
            }
            Effect::Banned {
                username,
                until,
                reason,
            } => json!({"type": "ban", "username": username, "until": until, "reason": reason}),
            Effect::Unbanned { username } => json!({"type": "unban", "username": username}),
            Effect::ModeSet { mode } => json!({"type": "room_mode", "mode": mode.as_str()}),
        };
        protocol::announcement(&self.room, &self.by, what)
    }
}

/// A mute or a ban: whom, until when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanction {
    pub username: String,
    /// ms since the epoch; over once it has passed.
    pub until: u64,
    pub reason: String,
}

/// A room's standing rules, loaded with the room and kept up to date by
/// each ruling. Mutes and bans are by username key (`protocol::username_key`,
/// which with sign-in on is the token's `sub`, compared as names are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub mode: RoomMode,
    pub mutes: HashMap<String, Sanction>,
    pub bans: HashMap<String, Sanction>,
}

impl Rules {
    /// `username`'s mute, if it still runs at `now`.
    pub fn muted(&self, username: &str, now: u64) -> Option<&Sanction> {
        live(&self.mutes, username, now)
    }

    /// `username`'s ban, if it still runs at `now`.
    pub fn banned(&self, username: &str, now: u64) -> Option<&Sanction> {
        live(&self.bans, username, now)
    }

    /// Whether nothing restricts anyone: the common case, checked first.
    pub fn is_open(&self) -> bool {
        self.mode == RoomMode::Open && self.mutes.is_empty()
    }

    /// Follows a ruling.
    pub fn apply(&mut self, effect: &Effect) {
        let key = protocol::username_key;
        match effect {
            Effect::Muted { username, until } => {
                self.mutes
                    .insert(key(username), sanction(username, *until, ""));
            }
            Effect::Unmuted { username } => {
                self.mutes.remove(&key(username));
            }
            Effect::Banned {
                username,
                until,
                reason,
            } => {
                self.bans
                    .insert(key(username), sanction(username, *until, reason));
            }
            Effect::Unbanned { username } => {
                self.bans.remove(&key(username));
            }
            Effect::ModeSet { mode } => self.mode = *mode,
            Effect::Deleted { .. } | Effect::Edited { .. } | Effect::Kicked { .. } => {}
        }
    }
}

fn sanction(username: &str, until: u64, reason: &str) -> Sanction {
    Sanction {
        username: username.to_string(),
        until,
        reason: reason.to_string(),
    }
}

fn live<'a>(
    sanctions: &'a HashMap<String, Sanction>,
    username: &str,
    now: u64,
) -> Option<&'a Sanction> {
    if sanctions.is_empty() {
        return None;
    }
    sanctions
        .get(&protocol::username_key(username))
        .filter(|s| s.until > now)
}

/// One row of a room's audit log: who did what to whom, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Its place in the room's log, from 1.
    pub seq: u64,
    /// ms since the epoch.
    pub ts: u64,
    pub by: String,
    /// The command's type: `delete`, `edit`, `mute`, …
    pub action: String,
    /// The user acted on (for a delete or an edit, the chat's author).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The rest: `chat 12`, `until 2026-…`, the reason.
    pub detail: String,
}
