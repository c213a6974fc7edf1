//! Judging a moderation action, the same whichever store holds the room:
//! pure functions from what the store found (the chat's stored text and
//! time) to the effect, or the refusal. SQLite (`sqlite/moderation.rs`)
//! and Redis (`cluster/courier/moderation.rs`) each read and write in their
//! own way, and both ask here what to do, so a room judges alike on one
//! node or many.
//!
//! Also here: how a ruling travels between nodes (`to_wire`, `from_wire`)
//! and what the audit log says of it (`audit_detail`).

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::moderation::{Action, Effect, Ruling};
use crate::protocol::{Command, Reason, Refusal, Role, RoomMode, username_key, utc};

/// A delete or an edit of a chat that exists (`json` as stored, sent at
/// `ts`), at `now`: the effect and the chat's author, or why not.
pub fn judge_chat(
    action: &Action,
    json: &str,
    ts: u64,
    now: u64,
) -> Result<(Effect, String), Refusal> {
    let kind = action.command.kind();
    let refuse = |reason, details: String| Err(Refusal::new(Some(kind), reason, details));
    let (id, edit) = match &action.command {
        Command::Delete { id } => (*id, None),
        Command::Edit { id, text } => (*id, Some(text)),
        _ => return refuse(Reason::InvalidCommand, "not about a chat".into()),
    };
    let mut chat: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
    let author = chat
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let own = username_key(&author) == username_key(&action.actor.name);
    let moderator_delete = edit.is_none() && action.actor.role == Role::Moderator;
    if !moderator_delete {
        if !own {
            let who = match edit {
                Some(_) => "only its author",
                None => "only its author or a moderator",
            };
            let details = format!("chat {id} is {author:?}'s; {who} may {}", kind.as_str());
            return refuse(Reason::NotAllowed, details);
        }
        if now.saturating_sub(ts) > action.edit_window_ms {
            let details = format!(
                "chat {id} was sent more than {} s ago; its author can no longer change it",
                action.edit_window_ms / 1000
            );
            return refuse(Reason::EditWindowPassed, details);
        }
    }
    let Some(text) = edit else {
        return Ok((Effect::Deleted { id }, author));
    };
    chat.insert("text".into(), json!(text));
    chat.insert("edited_ts".into(), json!(now));
    let stored = serde_json::to_string(&chat).unwrap_or_default();
    let effect = Effect::Edited {
        id,
        text: text.clone(),
        json: Bytes::from(stored),
    };
    Ok((effect, author))
}

/// What a command that is not about a chat does, at `now`.
pub fn effect_of(command: &Command, now: u64) -> Effect {
    let until = |seconds: u64| now.saturating_add(seconds.saturating_mul(1000));
    match command {
        Command::Mute { username, seconds } => Effect::Muted {
            username: username.clone(),
            until: until(*seconds),
        },
        Command::Unmute { username } => Effect::Unmuted {
            username: username.clone(),
        },
        Command::Kick { username, reason } => Effect::Kicked {
            username: username.clone(),
            reason: reason.clone(),
        },
        Command::Ban {
            username,
            seconds,
            reason,
        } => Effect::Banned {
            username: username.clone(),
            until: until(*seconds),
            reason: reason.clone(),
        },
        Command::Unban { username } => Effect::Unbanned {
            username: username.clone(),
        },
        Command::RoomMode { mode } => Effect::ModeSet { mode: *mode },
        // Chats are judged by `judge_chat`.
        Command::Delete { id } | Command::Edit { id, .. } => Effect::Deleted { id: *id },
    }
}

/// The refusal of a delete or an edit of a chat the room does not have.
pub fn unknown_chat(action: &Action, id: u64) -> Refusal {
    let details = format!(
        "room {} has no chat {id} (deleted, or never sent)",
        action.room
    );
    Refusal::new(Some(action.command.kind()), Reason::UnknownMessage, details)
}

/// The refusal of an unmute or unban of someone who is not muted or banned.
pub fn not_sanctioned(action: &Action) -> Refusal {
    let (name, what) = match &action.command {
        Command::Unban { username } => (username.as_str(), "banned"),
        Command::Unmute { username } => (username.as_str(), "muted"),
        _ => ("", ""),
    };
    let details = format!("{name:?} is not {what} in room {}", action.room);
    Refusal::new(Some(action.command.kind()), Reason::UnknownUser, details)
}

/// What the audit log says of a ruling besides who, whom and when (never
/// a chat's text).
pub fn audit_detail(ruling: &Ruling) -> String {
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

/// A ruling as one JSON line, for the other nodes (`from_wire` reads it
/// back): what the room is told, and for an edit the chat as stored now.
pub fn to_wire(ruling: &Ruling) -> String {
    let mut wire: Map<String, Value> =
        serde_json::from_slice(&ruling.announcement()).unwrap_or_default();
    wire.insert("ts".into(), json!(ruling.ts));
    if let Effect::Edited { json, .. } = &ruling.effect {
        wire.insert("json".into(), json!(String::from_utf8_lossy(json)));
    }
    Value::Object(wire).to_string()
}

/// A ruling heard from another node (`to_wire`), in `room`.
pub fn from_wire(room: &str, line: &[u8]) -> Option<Ruling> {
    let wire: Map<String, Value> = serde_json::from_slice(line).ok()?;
    let text = |key: &str| wire.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| wire.get(key).and_then(Value::as_u64);
    let username = || text("username");
    let effect = match wire.get("type")?.as_str()? {
        "delete" => Effect::Deleted { id: number("id")? },
        "edit" => Effect::Edited {
            id: number("id")?,
            text: text("text")?,
            json: Bytes::from(text("json")?),
        },
        "mute" => Effect::Muted {
            username: username()?,
            until: number("until")?,
        },
        "unmute" => Effect::Unmuted {
            username: username()?,
        },
        "kick" => Effect::Kicked {
            username: username()?,
            reason: text("reason").unwrap_or_default(),
        },
        "ban" => Effect::Banned {
            username: username()?,
            until: number("until")?,
            reason: text("reason").unwrap_or_default(),
        },
        "unban" => Effect::Unbanned {
            username: username()?,
        },
        "room_mode" => Effect::ModeSet {
            mode: RoomMode::named(&text("mode")?)?,
        },
        _ => return None,
    };
    Some(Ruling {
        room: room.to_string(),
        by: text("by")?,
        ts: number("ts")?,
        effect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ruling_crosses_the_wire_unchanged() {
        let ruling = |effect| Ruling {
            room: "r".into(),
            by: "teacher".into(),
            ts: 1_700_000_000_000,
            effect,
        };
        for effect in [
            Effect::Deleted { id: 3 },
            Effect::Edited {
                id: 4,
                text: "new \"text\"".into(),
                json: Bytes::from(r#"{"text":"new \"text\"","id":4}"#),
            },
            Effect::Muted {
                username: "bob".into(),
                until: 5,
            },
            Effect::Unmuted {
                username: "bob".into(),
            },
            Effect::Kicked {
                username: "bob".into(),
                reason: "spam".into(),
            },
            Effect::Banned {
                username: "bob".into(),
                until: 6,
                reason: String::new(),
            },
            Effect::Unbanned {
                username: "bob".into(),
            },
            Effect::ModeSet {
                mode: RoomMode::Lecture,
            },
        ] {
            let sent = ruling(effect);
            assert_eq!(from_wire("r", to_wire(&sent).as_bytes()), Some(sent));
        }
    }
}
